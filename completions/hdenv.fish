# fish completion for hdenv: subcommands, profile names and NAME/N (hashes once
# 6 characters are typed), files for `build`, what is loaded for unload/swap.

# The subcommands: `hdenv init` passes the click group's list; else ask hdenv.
function __hdenv_command_list
    if set -q __hdenv_commands[1]
        string split ' ' -- $__hdenv_commands
    else
        hdenv commands 2>/dev/null
    end
end

function __hdenv_no_command
    not __fish_seen_subcommand_from (__hdenv_command_list)
end

# Loaded profiles (NAME/N, or the hash) that are not on the command line yet.
function __hdenv_loaded_refs
    set -l typed (commandline -opc)[3..-1]
    for entry in (string split ' ' -- "$HDENV_LOADED")
        test -n "$entry"; or continue
        set -l ref (string replace -r ':.*' '' -- $entry)
        set -l hash (string replace -r '.*:' '' -- $entry)
        set -l name (string replace -r '/.*' '' -- $ref)
        contains -- $ref $typed; or contains -- $name $typed; or contains -- $hash $typed
        or echo $ref
    end
end

function __hdenv_refs
    hdenv avail --refs $argv (commandline -ct) 2>/dev/null
end

complete -c hdenv -f
complete -c hdenv -n __hdenv_no_command -a '(__hdenv_command_list)'
complete -c hdenv -n __hdenv_no_command -l store -r -F -d 'store root'
complete -c hdenv -n __hdenv_no_command -l debug -d 'show tracebacks'
complete -c hdenv -n '__fish_seen_subcommand_from init' -a 'bash zsh fish tcsh'
complete -c hdenv -n '__fish_seen_subcommand_from profile; and not __fish_seen_subcommand_from generations rollback prune' -a 'generations rollback prune'
complete -c hdenv -n '__fish_seen_subcommand_from store; and not __fish_seen_subcommand_from fix-permissions' -a 'fix-permissions'
complete -c hdenv -n '__fish_seen_subcommand_from usage; and not __fish_seen_subcommand_from report' -a 'report'
complete -c hdenv -n '__fish_seen_subcommand_from cache; and not __fish_seen_subcommand_from keygen list' -a 'keygen list'
complete -c hdenv -n '__fish_seen_subcommand_from host; and not __fish_seen_subcommand_from capture' -a capture
complete -c hdenv -n '__fish_seen_subcommand_from list; and not __fish_seen_subcommand_from artifacts profiles names' -a 'artifacts profiles names'
complete -c hdenv -n '__fish_seen_subcommand_from build mirror reproduce' -F
complete -c hdenv -n '__fish_seen_subcommand_from unload' -a '(__hdenv_loaded_refs)'
complete -c hdenv -n '__fish_seen_subcommand_from swap; and test (count (commandline -opc)) -le 2' -a '(__hdenv_loaded_refs)'
complete -c hdenv -n '__fish_seen_subcommand_from swap; and test (count (commandline -opc)) -ge 3' -a '(__hdenv_refs --packages)'
complete -c hdenv -n '__fish_seen_subcommand_from load try-load' -a '(__hdenv_refs --packages)'
complete -c hdenv -n '__fish_seen_subcommand_from env show path diff graph verify modulefiles pin unpin push export report pack' -a '(__hdenv_refs)'
