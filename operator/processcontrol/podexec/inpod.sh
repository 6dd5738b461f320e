# processcontrol in-pod script: POSIX sh (tested with dash and bash --posix), no tools beyond one sender.
#
# Run as:  sh -c "$SCRIPT" processcontrol ACTION JOBS PROCESSES
#   ACTION     STOP, START or STATUS
#   JOBS       comma-separated job names to act on; empty = all
#   PROCESSES  comma-separated process names to act on; empty = all
#
# Values arrive only as positional arguments. They are compared as plain strings and never reach
# `eval`, a glob, a `case` pattern or a command line: hostile names are harmless.
#
# Output (stdout), tab-separated, one line each, in no particular order between sockets:
#   PCTL1 tool NAME                                       sender (STOP/START) or prober (STATUS) used, or none
#   PCTL1 socket JOB PROCESS RESULT RUNNING PID           one per matching socket
#       RESULT   sent | refused | failed  (STOP/START)
#                probed | stale           (STATUS: stale = the socket refuses a connection)
#       RUNNING  1 if <process>_containerrun.running exists after the send, else 0
#       PID      the number in <base>/sys/run/bpm/<job>/<process>.pid, or -
#   PCTL1 error no-base-dir PATH                          exit 4
#   PCTL1 error no-sender-tool processcontrol,ncat,nc,socat,python3,perl   exit 3
# Exit 0 otherwise, also when sockets refuse: the caller reads the lines. Usage errors exit 2.
#
# Tools are tried in the order processcontrol, ncat, nc (OpenBSD or Ncat; other flavours lack -U and are
# skipped), socat, python3, perl. ncat and OpenBSD nc bind a reply socket under /tmp, so they are skipped
# when /tmp is not writable (read-only root filesystem); socat, python3 and perl need no file.
#
# "refused" is reported only when the tool itself says so (every supported tool prints the
# ECONNREFUSED text "Connection refused"; LC_ALL=C keeps that text unlocalised).
#
# STATUS never sends a datagram: it only connect()s a datagram socket to the path, which fails
# with ECONNREFUSED when no process is bound to it (a stale socket) and has no effect on the
# listener otherwise. `processcontrol send` cannot connect without sending, so STATUS uses the
# next tool, or else the Python named in processcontrol's shebang (tool `processcontrol-python`);
# with none, every socket is reported `probed` (not checked).
#
# The original Go container-run unlinks and rebinds its socket after every datagram, so a send may
# briefly see `refused` or `failed` (no such file) while it is healthy: callers retry before calling
# a socket stale.

LC_ALL=C
export LC_ALL
set -f

action=${1-}
jobs=${2-}
procs=${3-}
base=${CONTAINERRUN_BASE_DIR:-/var/vcap}
data=$base/data
TAB=$(printf '\t')
NL='
'
TOOLS=processcontrol,ncat,nc,socat,python3,perl

# Fixed programs for python3 and perl: argv = PAYLOAD SOCKET; empty payload = connect only.
# Exit 2 with the strerror text on ECONNREFUSED, 1 on any other error.
PY='import errno, socket, sys
payload, path = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    s.connect(path)
    if payload:
        s.send(payload.encode() + b"\n")
except OSError as e:
    sys.stderr.write("%s: %s\n" % (path, e.strerror))
    sys.exit(2 if e.errno == errno.ECONNREFUSED else 1)'
PL='use strict; use Socket;
my ($payload, $path) = @ARGV;
socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or do { print STDERR "socket: $!\n"; exit 1 };
my $ok = connect($s, pack_sockaddr_un($path));
$ok = defined(send($s, "$payload\n", 0)) if $ok && length($payload);
exit 0 if $ok;
print STDERR "$path: $!\n";
exit($!{ECONNREFUSED} ? 2 : 1);'

case $action in
STOP | START | STATUS) ;;
*)
	printf 'usage: sh -c SCRIPT processcontrol {STOP|START|STATUS} JOBS PROCESSES\n' >&2
	exit 2
	;;
esac

emit() {
	_line=PCTL1
	for _field; do
		_line=$_line$TAB$_field
	done
	# One write per line (far below PIPE_BUF), so lines of parallel jobs never interleave.
	printf '%s\n' "$_line"
}

# in_list NAME LIST: is NAME one of the comma-separated LIST? An empty LIST holds every name.
in_list() {
	[ -n "$2" ] || return 0
	_saved_ifs=$IFS
	IFS=,
	for _item in $2; do
		if [ "x$_item" = "x$1" ]; then
			IFS=$_saved_ifs
			return 0
		fi
	done
	IFS=$_saved_ifs
	return 1
}

have() {
	command -v "$1" >/dev/null 2>&1
}

# nc may be OpenBSD netcat, Ncat, or a flavour without unix sockets (busybox, traditional): ask it.
nc_kind=
nc_quit=
nc_help() {
	_help=$(nc -h </dev/null 2>&1)
	case $_help in
	*Ncat*) nc_kind=ncat ;;
	*"UNIX domain"* | *"UNIX-domain"* | *"unix domain"*) nc_kind=openbsd ;;
	*) return 1 ;;
	esac
	case $_help in
	*"-q secs"* | *"-q seconds"*) nc_quit=1 ;;
	esac
	return 0
}

# The console script's own interpreter (a pip/venv shebang), for probing when processcontrol is the only tool.
pc_python=
pc_python_find() {
	_exe=$(command -v processcontrol 2>/dev/null) || return 1
	[ -r "$_exe" ] || return 1
	IFS= read -r _shebang <"$_exe" || [ -n "${_shebang-}" ] || return 1
	case $_shebang in
	'#!/'*) _interp=${_shebang#??} ;;
	*) return 1 ;;
	esac
	case $_interp in
	*' '* | *"$TAB"*) return 1 ;;
	*python*) ;;
	*) return 1 ;;
	esac
	[ -x "$_interp" ] || return 1
	pc_python=$_interp
}

# socat_escape PATH: sets socat_path to PATH with a backslash before every byte but [A-Za-z0-9._/-]. socat parses
# its address argument (':' ',' '!!' and, from 1.7.4, quotes and brackets are syntax; a backslash makes the next
# character literal), so a socket whose name has those characters is otherwise a different path or an error.
socat_escape() {
	_in=$1
	socat_path=
	while [ -n "$_in" ]; do
		_rest=${_in#?}
		_c=${_in%"$_rest"}
		_in=$_rest
		case $_c in
		[A-Za-z0-9._/-]) socat_path=$socat_path$_c ;;
		*) socat_path=$socat_path\\$_c ;;
		esac
	done
}

# send_with TOOL PAYLOAD SOCKET: payload on stdin via a here-document, which the shell fills before the
# tool starts (a pipe from printf could lose the race against `nc -w 0`'s zero-timeout poll).
# Empty PAYLOAD: connect only (STATUS probe), nothing is sent.
send_with() {
	_t=$1
	_p=$2
	_s=$3
	if [ -z "$_p" ]; then
		case $_t in
		ncat) ncat --send-only --unixsock --udp -- "$_s" </dev/null ;;
		nc-ncat) nc --send-only --unixsock --udp -- "$_s" </dev/null ;;
		nc-openbsd) nc -uU -w 0 -- "$_s" </dev/null ;;
		socat)
			socat_escape "$_s"
			socat -t 0 /dev/null "UNIX-CONNECT:$socat_path,type=2"
			;;
		python3) python3 -I -S -c "$PY" "" "$_s" ;;
		perl) perl -e "$PL" -- "" "$_s" ;;
		processcontrol-python) "$pc_python" -I -S -c "$PY" "" "$_s" ;;
		*) return 1 ;;
		esac
		return
	fi
	case $_t in
	ncat)
		ncat --send-only --unixsock --udp -- "$_s" <<EOF
$_p
EOF
		;;
	nc-ncat)
		nc --send-only --unixsock --udp -- "$_s" <<EOF
$_p
EOF
		;;
	nc-openbsd)
		if [ -n "$nc_quit" ]; then
			nc -uU -q 0 -w 0 -- "$_s" <<EOF
$_p
EOF
		else
			nc -uU -w 0 -- "$_s" <<EOF
$_p
EOF
		fi
		;;
	socat)
		socat_escape "$_s"
		socat -t 0 - "UNIX-SENDTO:$socat_path" <<EOF
$_p
EOF
		;;
	python3) python3 -I -S -c "$PY" "$_p" "$_s" </dev/null ;;
	perl) perl -e "$PL" -- "$_p" "$_s" </dev/null ;;
	*) return 1 ;;
	esac
}

if [ ! -d "$data" ]; then
	emit error no-base-dir "$data"
	exit 4
fi

# Pick the tool. STATUS needs one that can connect without sending, so it skips `processcontrol send`.
# ncat and OpenBSD nc bind their own reply socket under /tmp (hard-coded): skip them where /tmp is read-only.
tmp_ok=
if [ -d /tmp ] && [ -w /tmp ]; then
	tmp_ok=1
fi
tool=none
impl=
if [ "$action" != STATUS ] && have processcontrol; then
	tool=processcontrol impl=processcontrol
elif [ -n "$tmp_ok" ] && have ncat; then
	tool=ncat impl=ncat
elif [ -n "$tmp_ok" ] && have nc && nc_help; then
	tool=nc impl=nc-$nc_kind
elif have socat; then
	tool=socat impl=socat
elif have python3; then
	tool=python3 impl=python3
elif have perl; then
	tool=perl impl=perl
elif [ "$action" = STATUS ] && pc_python_find; then
	tool=processcontrol-python impl=processcontrol-python
fi

# Discover sockets: <data>/<job>/<process>_containerrun.sock. Globbing is on only for this line;
# the quoted part of the pattern is literal.
set +f
set -- "$data"/*/*_containerrun.sock
set -f

suffix=_containerrun.sock

# wanted SOCKET: sets job and proc from the path; true when the socket passes the filters.
wanted() {
	[ -S "$1" ] || return 1
	dir=${1%/*}
	job=${dir##*/}
	file=${1##*/}
	proc=${file%"$suffix"}
	case $job$proc in
	*"$TAB"* | *"$NL"*) return 1 ;; # cannot be reported on one line
	esac
	in_list "$job" "$jobs" && in_list "$proc" "$procs"
}

matched=0
for sock; do
	if wanted "$sock"; then
		matched=$((matched + 1))
	fi
done

if [ "$tool" = none ] && [ -z "$tmp_ok" ] && { have ncat || have nc; }; then
	printf 'processcontrol: ncat/nc present but unusable: /tmp is not writable\n' >&2
fi
if [ "$action" != STATUS ] && [ "$tool" = none ] && [ "$matched" -gt 0 ]; then
	emit error no-sender-tool "$TOOLS"
	exit 3
fi
emit tool "$tool"

report_one() {
	_sock=$1
	_job=$2
	_proc=$3
	if [ "$action" = STATUS ]; then
		_ok=probed
		_no=stale
		_fail=probed
		_payload=
	else
		_ok=sent
		_no=refused
		_fail=failed
		_payload=$action
	fi
	if [ -z "$impl" ]; then
		_result=$_ok
	elif [ "$impl" = processcontrol ]; then
		_result=$_fail
		while IFS= read -r _line; do
			case $_line in
			"sent "*" $_sock" | "sent "*" $_sock: "*) _result=$_ok ;;
			"refused "*" $_sock" | "refused "*" $_sock: "*) _result=$_no ;;
			esac
		done <<EOF
$batch
EOF
	elif _err=$(send_with "$impl" "$_payload" "$_sock" 2>&1); then
		_result=$_ok
	else
		case $_err in
		*[Rr]efused* | *REFUSED*) _result=$_no ;;
		*) _result=$_fail ;;
		esac
	fi
	_running=0
	[ -e "${_sock%"$suffix"}_containerrun.running" ] && _running=1
	_pid=-
	_pidfile=$base/sys/run/bpm/$_job/$_proc.pid
	if [ -f "$_pidfile" ] && [ -r "$_pidfile" ]; then
		_pv=
		IFS= read -r _pv <"$_pidfile" || :
		_pv=${_pv%"${_pv##*[0-9]}"} # drop trailing whitespace/CR
		_pv=${_pv#"${_pv%%[0-9]*}"} # drop leading whitespace
		case $_pv in
		'' | *[!0-9]*) ;;
		*) _pid=$_pv ;;
		esac
	fi
	emit socket "$_job" "$_proc" "$_result" "$_running" "$_pid"
}

# `processcontrol send` takes every socket at once: one Python start-up instead of one per socket.
# Its lines are `RESULT PATH[: why]`; report_one reads each socket's result from them.
batch=
if [ "$impl" = processcontrol ]; then
	count=$#
	while [ "$count" -gt 0 ]; do
		sock=$1
		shift
		count=$((count - 1))
		if wanted "$sock"; then
			set -- "$@" "$sock"
		fi
	done
	if [ "$#" -gt 0 ]; then
		batch=$(processcontrol send "$action" -- "$@" </dev/null 2>&1) || :
	fi
fi

# Every socket in parallel: no socket waits for another's tool start-up.
for sock; do
	if wanted "$sock"; then
		report_one "$sock" "$job" "$proc" &
	fi
done
wait
exit 0
