"""hdenv: a hash-addressed software store with shell integration.

Kept empty on purpose: `hdenv load` imports this package on its fast path, so
nothing here may pull in click, jinja2 or other heavy modules.
"""

__version__ = "0.1.0"
