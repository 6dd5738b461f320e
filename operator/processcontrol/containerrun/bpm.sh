#!/bin/sh
# bpm, written by processcontrol's containerrun at <base>/jobs/bpm/bin/bpm when none is there, as the Go
# container-run writes its own: BOSH drain scripts and operators call it. POSIX sh.
#
#   bpm start|stop|term|quit|pid|running JOB [-p PROCESS]      (PROCESS defaults to JOB)
#
#   start    send START                                          exit 0 sent, 1 not sent
#   quit     send QUIT (SIGQUIT to the process)                  exit 0 sent, 1 not sent
#   term     send STOP, do not wait                              exit 0 sent, 1 not sent
#   stop     send STOP, wait up to 30 s for the .running sentinel to go
#                                                                exit 0 gone, 1 "Process did not stop within 30 seconds"
#   pid      print the main process's pid                        exit 0, or 1 "Process is not running"
#   running  exit 0 if the sentinel exists, else 1 (prints yes/no when stdout is a terminal)
#   anything else: the usage line, exit 1
#
# The same verbs, arguments, exit codes and waits as the Go original's bash script, with three changes: the base
# directory is $CONTAINERRUN_BASE_DIR, else the one containerrun ran with (not always /var/vcap); the datagram goes
# with `processcontrol send` when it is on PATH, else ncat, nc (OpenBSD or Ncat), socat, python3 or perl, without
# `nc -w 1`'s second of waiting (a failed send is retried for up to about a second, because the Go original
# unlinks and rebinds its socket after every datagram); and names are only ever quoted arguments, never code.
# PROCESSCONTROL_BPM_STOP_WAIT (whole seconds, default 30) bounds `stop`'s wait.

LC_ALL=C
export LC_ALL
set -f

base=${CONTAINERRUN_BASE_DIR:-@BASE_DIR@}
case $base in
/*) ;;
*) base=./$base ;; # never a leading "-" in a path handed to a tool
esac

usage() {
	printf 'usage: %s [start|stop|quit|term|pid|running] JOBNAME [-p PROCESSNAME]\n' "$0"
	exit 1
}

if [ "$#" -ne 2 ] && [ "$#" -ne 4 ]; then
	usage
fi
case $1 in
start | stop | term | quit | pid | running) ;;
*) usage ;;
esac
cmd=$1
job=$2
process=$2
if [ "$#" -eq 4 ]; then
	[ "x$3" = x-p ] || usage
	process=$4
fi

if [ "$cmd" = pid ]; then
	pidfile=$base/sys/run/bpm/$job/$process.pid
	if [ -f "$pidfile" ]; then
		cat "$pidfile"
		echo
		exit 0
	fi
	echo "Process is not running"
	exit 1
fi

prefix=$base/data/$job/${process}_containerrun
if [ "$cmd" = running ]; then
	if [ -f "$prefix.running" ]; then
		[ -t 1 ] && echo yes
		exit 0
	fi
	[ -t 1 ] && echo no
	exit 1
fi

case $cmd in
start) action=START ;;
quit) action=QUIT ;;
*) action=STOP ;; # stop and term
esac
sock=$prefix.sock

# Fractional sleeps where the sleep command has them (GNU, busybox), else whole seconds.
if sleep 0.01 2>/dev/null; then
	tick=0.1 per_second=10
else
	tick=1 per_second=1
fi

# Fixed programs for python3 and perl: argv = PAYLOAD SOCKET.
PY='import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(5)
try:
    s.sendto(sys.argv[1].encode() + b"\n", sys.argv[2])
except OSError as e:
    sys.stderr.write("%s: %s\n" % (sys.argv[2], e.strerror or e))
    sys.exit(1)'
PL='use strict; use Socket;
my ($payload, $path) = @ARGV;
socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or do { print STDERR "socket: $!\n"; exit 1 };
defined(send($s, "$payload\n", 0, pack_sockaddr_un($path))) or do { print STDERR "$path: $!\n"; exit 1 };'

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

# socat parses its address (':' ',' '!!', quotes, brackets): a backslash before every other byte keeps it literal.
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

# ncat and OpenBSD nc bind a reply socket under /tmp: skipped where /tmp is not writable.
tmp_ok=
[ -d /tmp ] && [ -w /tmp ] && tmp_ok=1
if have processcontrol; then
	tool=processcontrol
elif [ -n "$tmp_ok" ] && have ncat; then
	tool=ncat
elif [ -n "$tmp_ok" ] && have nc && nc_help; then
	tool=nc-$nc_kind
elif have socat; then
	tool=socat
elif have python3; then
	tool=python3
elif have perl; then
	tool=perl
else
	echo "bpm: no tool to send $action with (processcontrol, ncat, nc, socat, python3, perl)" >&2
	tool=
fi

# send_once: one datagram to $sock; the payload goes on stdin by here-document where the tool reads stdin.
send_once() {
	case $tool in
	processcontrol) processcontrol send "$action" -- "$sock" </dev/null ;;
	ncat)
		ncat --send-only --unixsock --udp -- "$sock" <<EOF
$action
EOF
		;;
	nc-ncat)
		nc --send-only --unixsock --udp -- "$sock" <<EOF
$action
EOF
		;;
	nc-openbsd)
		if [ -n "$nc_quit" ]; then
			nc -uU -q 0 -w 0 -- "$sock" <<EOF
$action
EOF
		else
			nc -uU -w 0 -- "$sock" <<EOF
$action
EOF
		fi
		;;
	socat)
		socat_escape "$sock"
		socat -t 0 - "UNIX-SENDTO:$socat_path" <<EOF
$action
EOF
		;;
	python3) python3 -I -S -c "$PY" "$action" "$sock" </dev/null ;;
	perl) perl -e "$PL" -- "$action" "$sock" </dev/null ;;
	*) return 1 ;;
	esac
}

# A failed send is retried 10 times, a tick apart: the Go original's socket is missing or refuses between two
# datagrams. The last attempt's message is shown.
sent=
attempt=0
if [ -n "$tool" ]; then
	while :; do
		if out=$(send_once 2>&1); then
			sent=1
			break
		fi
		attempt=$((attempt + 1))
		[ "$attempt" -lt 10 ] || break
		sleep "$tick"
	done
	[ -n "$sent" ] || printf '%s\n' "$out" >&2
fi

if [ "$cmd" != stop ]; then
	[ -n "$sent" ] || exit 1
	exit 0
fi

# stop: like the original, the result is whether the sentinel goes within the wait, whatever the send said.
wait_s=${PROCESSCONTROL_BPM_STOP_WAIT:-30}
case $wait_s in
'' | *[!0-9]*) wait_s=30 ;;
esac
checks=$((wait_s * per_second))
while [ "$checks" -gt 0 ]; do
	[ -f "$prefix.running" ] || exit 0
	checks=$((checks - 1))
	sleep "$tick"
done
[ -f "$prefix.running" ] || exit 0
echo "Process did not stop within $wait_s seconds"
exit 1
