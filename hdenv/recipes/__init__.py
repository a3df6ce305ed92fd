"""Recipe repositories, recipes and build-system templates (issue 24): what a stack chooses from."""
