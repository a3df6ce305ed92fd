# bash completion for hdenv: subcommands, profile names and hashes.
# Loaded by `eval "$(hdenv init bash)"`; can also be sourced on its own.

__hdenv_loaded_names() {
    printf '%s\n' "${HDENV_LOADED-}" | tr ' ' '\n' | sed 's/:.*//'
}

__hdenv_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local cmds="init build fetch host list show path diff graph load unload swap purge loaded avail env profile verify config store usage"
    local words=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        words=$cmds
    else
        case "${COMP_WORDS[1]}" in
            init) words="bash zsh fish tcsh" ;;
            profile) [ "$COMP_CWORD" -eq 2 ] && words="generations rollback prune" ;;
            host) [ "$COMP_CWORD" -eq 2 ] && words="capture" ;;
            store) [ "$COMP_CWORD" -eq 2 ] && words="fix-permissions" ;;
            usage) [ "$COMP_CWORD" -eq 2 ] && words="report" ;;
            unload) words=$(__hdenv_loaded_names) ;;
            swap)
                if [ "$COMP_CWORD" -eq 2 ]; then
                    words=$(__hdenv_loaded_names)
                else
                    words=$(hdenv avail --refs 2>/dev/null)
                fi
                ;;
            load|env|show|path|diff|graph) words=$(hdenv avail --refs 2>/dev/null) ;;
            *) return 0 ;;
        esac
    fi
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -F __hdenv_complete hdenv
