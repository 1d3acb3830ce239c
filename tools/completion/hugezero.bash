# bash completion for hugezerod, hugezero-run and zero_all_nodes, installed under each name in
# bash-completion's directory. The options are those the program itself prints in --help, so
# they cannot drift from it; after hugezero-run's "--", the command's own completion takes over.
_hugezero_complete()
{
    local cur=${COMP_WORDS[COMP_CWORD]} program=${COMP_WORDS[0]} i
    local -a help=("$program")
    [[ $program == *hugezerod && ${COMP_WORDS[1]-} == status ]] && help+=(status)
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == -- ]]; then
            _command_offset $((i + 1)) 2>/dev/null
            return
        fi
    done
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$("${help[@]}" --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u)" -- "$cur")
    elif [[ $program == *hugezerod && $COMP_CWORD == 1 ]]; then
        mapfile -t COMPREPLY < <(compgen -W status -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -F _hugezero_complete hugezerod hugezero-run zero_all_nodes
