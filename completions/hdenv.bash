# bash completion for hdenv: subcommands, profile names and NAME/N (hashes once
# 6 characters are typed), files for `build`, what is loaded for unload/swap.
# Loaded by `hdenv init bash`; can also be sourced on its own.

# The subcommands: `hdenv init` passes the click group's list; else ask hdenv.
__hdenv_command_list() {
    if [ -n "${__hdenv_commands-}" ]; then
        printf '%s\n' "$__hdenv_commands"
    else
        hdenv commands 2>/dev/null
    fi
}

# Loaded profiles (NAME/N, or the hash) that are not on the command line yet.
__hdenv_loaded_refs() {
    local entry ref word seen
    for entry in ${HDENV_LOADED-}; do
        ref=${entry%%:*}
        seen=
        for word in "${COMP_WORDS[@]:2:COMP_CWORD-2}"; do
            case "$word" in
                "$ref" | "${ref%%/*}" | "${entry#*:}") seen=1 ;;
            esac
        done
        [ -n "$seen" ] || printf '%s\n' "$ref"
    done
}

__hdenv_complete() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local i=1 cmd="" store=""
    while [ "$i" -lt "$COMP_CWORD" ]; do
        case "${COMP_WORDS[i]}" in
            --store) store=${COMP_WORDS[i + 1]-}; i=$((i + 2)) ;;
            -*) i=$((i + 1)) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    local pos=$((COMP_CWORD - i)) words=""
    if [ -z "$cmd" ]; then
        case "$cur" in
            -*) words="--store --debug --help --version" ;;
            *) words=$(__hdenv_command_list) ;;
        esac
    else
        case "$cmd" in
            init) [ "$pos" -eq 1 ] && words="bash zsh fish tcsh" ;;
            profile) [ "$pos" -eq 1 ] && words="generations rollback prune" ;;
            host) [ "$pos" -eq 1 ] && words="capture" ;;
            store) [ "$pos" -eq 1 ] && words="fix-permissions" ;;
            usage) [ "$pos" -eq 1 ] && words="report" ;;
            cache) [ "$pos" -eq 1 ] && words="keygen list" ;;
            list) [ "$pos" -eq 1 ] && words="artifacts profiles names" ;;
            build|mirror|reproduce)
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                return 0
                ;;
            unload) words=$(__hdenv_loaded_refs) ;;
            swap)
                if [ "$pos" -eq 1 ]; then
                    words=$(__hdenv_loaded_refs)
                else
                    words=$(HDENV_STORE=${store:-${HDENV_STORE-}} hdenv avail --refs --packages "$cur" 2>/dev/null)
                fi
                ;;
            load|try-load)  # profiles and packages by name
                words=$(HDENV_STORE=${store:-${HDENV_STORE-}} hdenv avail --refs --packages "$cur" 2>/dev/null)
                ;;
            env|show|path|diff|graph|verify|modulefiles|pin|unpin|push|export|report|pack)
                words=$(HDENV_STORE=${store:-${HDENV_STORE-}} hdenv avail --refs "$cur" 2>/dev/null)
                ;;
            *) return 0 ;;
        esac
    fi
    __hdenv_reply "$words"
}

# The words of $1 (one per line, or blank-separated for the fixed lists) that start
# with $cur, taken literally: compgen -W would expand $(...) and globs in a name.
__hdenv_reply() {
    local w
    COMPREPLY=()
    while IFS= read -r w; do
        case "$w" in
            "") ;;
            "$cur"*) COMPREPLY+=("$w") ;;
        esac
    done < <(printf '%s\n' "$1" | tr ' ' '\n')
}
complete -F __hdenv_complete hdenv
