# Sourced by the `hdenv` alias that `hdenv init tcsh` defines, with the
# command's words in $argv. load, unload, swap, purge, restore, reset and global options run
# hdenv's fast path, which writes tcsh code; the code is sourced only when the
# program succeeded, and its status is given back as $status. avail, loaded
# and spider print from the fast path; the rest goes to the hdenv program.
set __hdenv_cmd = ''
if ( $#argv > 0 ) set __hdenv_cmd = $argv[1]:q
if ( $__hdenv_cmd:q == load || $__hdenv_cmd:q == unload || $__hdenv_cmd:q == swap || $__hdenv_cmd:q == purge || $__hdenv_cmd:q == restore || $__hdenv_cmd:q == reset || $__hdenv_cmd:q == ml || $__hdenv_cmd:q == use || $__hdenv_cmd:q == unuse || $__hdenv_cmd:q == try-load || $__hdenv_cmd:q == refresh || $__hdenv_cmd:q == update || $__hdenv_cmd:q =~ -?* ) then
    set __hdenv_tmp = `mktemp -t hdenv.XXXXXXXX`
    $__hdenv_py:q -I -S -c $__hdenv_fast:q $__hdenv_lib:q tcsh $__hdenv_config:q $__hdenv_store:q $argv:q >! $__hdenv_tmp:q
    set __hdenv_status = $status
    if ( $__hdenv_status == 0 ) then
        source $__hdenv_tmp:q
        set __hdenv_status = $status
    endif
    /bin/rm -f $__hdenv_tmp:q
    unset __hdenv_tmp
else if ( $__hdenv_cmd:q == avail || $__hdenv_cmd:q == loaded || $__hdenv_cmd:q == spider || $__hdenv_cmd:q == list || $__hdenv_cmd:q == savelist || $__hdenv_cmd:q == whatis || $__hdenv_cmd:q == keyword || $__hdenv_cmd:q == help || $__hdenv_cmd:q == show ) then
    $__hdenv_py:q -I -S -c $__hdenv_fast:q $__hdenv_lib:q tcsh $__hdenv_config:q $__hdenv_store:q $argv:q
    set __hdenv_status = $status
else
    env HDENV_SHELL_FUNCTION=tcsh $__hdenv_py:q -m hdenv $argv:q
    set __hdenv_status = $status
endif
unset __hdenv_cmd
( exit $__hdenv_status )
