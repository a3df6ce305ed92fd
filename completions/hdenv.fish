# fish completion for hdenv: subcommands, profile names and hashes.

function __hdenv_loaded_names
    for item in (string split ' ' -- "$HDENV_LOADED")
        string replace -r ':.*' '' -- $item
    end
end

set -l __hdenv_cmds init build fetch host list show path diff graph load unload swap purge loaded avail env modulefiles export mirror reproduce report profile gc du verify
complete -c hdenv -f
complete -c hdenv -n "not __fish_seen_subcommand_from $__hdenv_cmds" -a "$__hdenv_cmds"
complete -c hdenv -n '__fish_seen_subcommand_from init' -a 'bash zsh fish tcsh'
complete -c hdenv -n '__fish_seen_subcommand_from unload swap' -a '(__hdenv_loaded_names)'
complete -c hdenv -n '__fish_seen_subcommand_from load swap env show path diff graph export report' -a '(command hdenv avail --refs 2>/dev/null)'
