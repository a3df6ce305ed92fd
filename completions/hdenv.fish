# fish completion for hdenv: subcommands, profile names and hashes.

function __hdenv_loaded_names
    for item in (string split ' ' -- "$HDENV_LOADED")
        string replace -r ':.*' '' -- $item
    end
end

set -l __hdenv_cmds init build fetch host list show path diff graph load unload swap purge loaded avail env profile verify config store usage
complete -c hdenv -f
complete -c hdenv -n "not __fish_seen_subcommand_from $__hdenv_cmds" -a "$__hdenv_cmds"
complete -c hdenv -n '__fish_seen_subcommand_from init' -a 'bash zsh fish tcsh'
complete -c hdenv -n '__fish_seen_subcommand_from profile; and not __fish_seen_subcommand_from generations rollback prune' -a 'generations rollback prune'
complete -c hdenv -n '__fish_seen_subcommand_from store; and not __fish_seen_subcommand_from fix-permissions' -a 'fix-permissions'
complete -c hdenv -n '__fish_seen_subcommand_from usage; and not __fish_seen_subcommand_from report' -a 'report'
complete -c hdenv -n '__fish_seen_subcommand_from host; and not __fish_seen_subcommand_from capture' -a capture
complete -c hdenv -n '__fish_seen_subcommand_from unload swap' -a '(__hdenv_loaded_names)'
complete -c hdenv -n '__fish_seen_subcommand_from load swap env show path diff graph' -a '(hdenv avail --refs 2>/dev/null)'
