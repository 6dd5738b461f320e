# processcontrol in-pod script: POSIX sh (tested with dash and bash --posix), no tools beyond one sender.
#
# This readable file is the source; what each exec sends is its compact form (script.py drops comment lines,
# blank lines and leading tabs at import time). So: indent shell code with tabs only, never start a line of
# data (here-document, PY/PL program) with a tab or a `#`, and indent the embedded Python with spaces.
#
# Run as:  sh -c "$SCRIPT" processcontrol JOBS PROCESSES WAIT_MS WINDOW_MS [ONLY]
#   JOBS       comma-separated job names to look at; empty = all
#   PROCESSES  comma-separated process names to look at; empty = all
#   WAIT_MS    after a STOP/START: wait in the pod up to this many ms for the sentinels to reach the target
#   WINDOW_MS  how long after the script's start a go-ahead still counts
#   ONLY       `*` (default) = the filters alone; else JOB/PROCESS pairs one a line, also filtered; empty = none
#
# One exec per transition, fenced. The script first reports what it sees, sending nothing; then it waits for
# its go-ahead on stdin: one line, tab-separated, `ACTION SEQ JOB/PROCESS...` (ACTION STOP or START, SEQ the
# ledger write it was decided from, a number; the pairs are what to send it to, among the sockets reported).
# The operator writes its hold ledger between the two. Anything else (EOF, a closed stream, an empty or
# malformed line, a go-ahead after WINDOW_MS) sends nothing: the script says so and ends. A watchdog ends the
# script at the window's end if no line comes at all, and is gone (with its sleep) before anything is sent. So an
# exec that timed out, lost its operator or outlived its window never acts, and nothing of it stays behind.
#
# Values arrive only as positional arguments and on stdin. They are compared as plain strings and never reach
# `eval`, a glob, a `case` pattern or a command line: hostile names are harmless.
#
# Output (stdout), tab-separated, one line each. First the look, ending in `ready`:
#   PCTL1 tool NAME                                       the prober (below), or none
#   PCTL1 socket JOB PROCESS RESULT RUNNING PID WAS       one per matching socket; RESULT probed | stale
#                (stale = the socket refuses a connection; probed = it does not, or the sentinel says running
#                so nothing was probed, or there is no prober)
#   PCTL1 ready COUNT                                     COUNT socket lines came before it
# then, after a go-ahead:
#   PCTL1 go ACTION SEQ
#   PCTL1 tool NAME                                       the sender used
#   PCTL1 socket JOB PROCESS RESULT RUNNING PID WAS       one per socket named and found; RESULT sent | refused | failed
#   PCTL1 end COUNT
# or, without one:
#   PCTL1 idle WHY                                        eof | window | invalid: nothing was sent
#   PCTL1 end 0
#       RUNNING  1 if <process>_containerrun.running exists at the end (after the send and the wait), else 0
#       PID      the number in <base>/sys/run/bpm/<job>/<process>.pid (a regular file only), or -
#       WAS      1 if the sentinel existed before anything was sent, else 0
# Errors instead of the look:
#   PCTL1 error no-base-dir PATH                          exit 4
#   PCTL1 error no-sender-tool perl,python3,processcontrol,ncat,nc,socat   exit 3 (a go-ahead was due)
#   PCTL1 end 0
# Exit 0 otherwise, also when sockets refuse: the caller reads the lines. Usage errors exit 2, print nothing.
#
# Cost: the fast path starts one process per round besides sh: one perl or python3 (or processcontrol's own
# Python, run with -I -S so it imports nothing of ours: `processcontrol send` costs ~140 ms of imports, its
# interpreter ~40 ms, perl ~15 ms) sends to every socket, retries and times out. Sentinels and pid files are
# read with shell built-ins. Only images with none of these fall back to one ncat/nc/socat per socket, at
# most 8 at once. The look sends nothing and probes (connects to) only sockets whose sentinel is gone, since
# only there must "stopped" be told from "stale" (connecting a datagram socket has no effect on the listener).
#
# ncat and OpenBSD nc bind a reply socket under /tmp, so they are skipped when /tmp is not writable.
# "refused" is reported only when the tool says so (the ECONNREFUSED text; LC_ALL=C keeps it unlocalised).
#
# The original Go container-run unlinks and rebinds its socket after every datagram, so a send may briefly see
# ENOENT or ECONNREFUSED while it is healthy: those are retried (3 more tries, ~100 ms in all) before a socket
# is called refused/stale.

export LC_ALL=C
set -f
# Short names keep the compact form small (comments cost nothing, they are not sent):
#   J jobs filter, K processes filter, M wait in ms, W window in ms, O the `only` pairs, B base dir, X default
#   IFS, T tab, N newline, m the tool, c its argv (ncat, nc), pl the payload (empty = probe only), w ms waited,
#   a the go-ahead's action, G its line.
J=$1
K=$2
M=$3
W=$4
O=${5-*}
B=${CONTAINERRUN_BASE_DIR:-/var/vcap}
X=$IFS
# A literal tab: $(printf '\t') would cost a fork.
T='	'
N='
'

# Batch senders, argv = PAYLOAD DEADLINE SOCKET...; an empty PAYLOAD connects only (the look's probe). They print
# SOCKET<tab>sent or SOCKET<tab>ERRNO per socket; a send blocked by a full receive queue times out after 1 s. Past
# DEADLINE (ms of uptime; 0: none) nothing more is sent (ERRNO 62, ETIME): see F below.
# Linux numbers keep them short (containers are Linux): AF_UNIX 1, SOCK_DGRAM 2, sockaddr_un = u16 family + path;
# SOL_SOCKET 1, SO_SNDTIMEO 21 (x86, arm, s390x; elsewhere setsockopt fails and the send has no timeout).
PY='import socket,sys
p,d,*q=sys.argv[1:]
for f in q:
 s=socket.socket(1,2);s.settimeout(1)
 try:
  if p and int(d) and float(open("/proc/uptime").read().split()[0])*1000>int(d):raise OSError(62,"")
  s.connect(f);p and s.send(p.encode()+b"\n");e="sent"
 except OSError as x:e=x.errno
 print(f,e,sep="\t")'
PL='($p,$d,@q)=@ARGV;for(@q){socket$s,1,2,0;setsockopt$s,1,21,pack"l!l!",1,0;
open U,"/proc/uptime";<U>=~/^(\d+)\.(\d+)/;
print"$_\t",length$p&&$d&&$1*1e3+"0.$2"*1e3>$d?62:connect($s,pack"Sa*",1,$_)&&(!length$p||send$s,"$p\n",0)?sent:0+$!,"\n"}'

case $M.$W in
*[!0-9.]* | .* | *. | *.*.*) false ;;
esac || {
	echo "usage: $0 JOBS PROCESSES WAIT_MS WINDOW_MS [ONLY]" >&2
	exit 2
}

# e FIELD...: one output line, written at once.
e() {
	_l=PCTL1
	for _f; do
		_l=$_l$T$_f
	done
	printf '%s\n' "$_l"
}

# il NAME LIST: is NAME one of the comma-separated LIST? An empty LIST holds every name.
il() {
	[ -z "$2" ] && return
	IFS=,
	for _x in $2; do
		[ "x$_x" = "x$1" ] && break
	done
	IFS=$X
	[ "x$_x" = "x$1" ]
}

h() {
	command -v "$1" >/dev/null
}

# now: t = milliseconds of uptime, read with a built-in; fails where /proc/uptime cannot be read.
now() {
	{ IFS=" " read -r t _ </proc/uptime; } 2>/dev/null || return
	t=${t%.*}${t#*.}0
	t=${t#"${t%%[!0]*}"}
}

# z MS SECONDS: a short sleep. `sleep` with a fraction where it takes one (GNU, busybox), else spin on the
# uptime clock for MS, else return at once: never a whole second.
z() {
	[ "$zf" ] || {
		zf=0
		sleep .001 2>/dev/null && zf=1
	}
	if [ $zf = 1 ]; then
		sleep $2
	elif now; then
		_e=$((t + $1))
		while now && [ $t -lt $_e ]; do :; done
	fi
}

# x SOCKET: one per-socket tool on SOCKET, payload on stdin from a here-document (filled before the tool
# starts: a pipe could lose the race against `nc -w 0`). socat parses its address (':' ',' '!!' quotes,
# brackets), so every byte but [A-Za-z0-9._/-] gets a backslash.
x() {
	# shellcheck disable=SC2086 # c is the tool's argv (ncat, nc), split on spaces
	set -- $c "$1"
	[ $m = socat ] && {
		_i=$1
		_p=
		while [ "$_i" ]; do
			_r=${_i#?}
			_c=${_i%"$_r"}
			case $_c in
			[!A-Za-z0-9._/-]) _p=$_p\\ ;;
			esac
			_p=$_p$_c _i=$_r
		done
		set -- socat -t 0 /dev/null "UNIX-CONNECT:$_p,type=2"
		[ "$pl" ] && set -- socat -t 0 - "UNIX-SENDTO:$_p"
	}
	if [ "$pl" ]; then
		"$@" <<EOF
$pl
EOF
	else
		"$@" </dev/null
	fi
}

# y SOCKET: x, printing SOCKET<tab>sent, else SOCKET<tab>111 if the tool says "refused" (the ECONNREFUSED
# text; LC_ALL=C keeps it unlocalised), else SOCKET<tab>2.
y() {
	_r=sent
	if [ "$pl" ] && [ "$F" ] && now && [ $t -gt $F ]; then
		printf '%s\t62\n' "$1"
		return
	fi
	_o=$(x "$1" 2>&1) || case $_o in
	*efused* | *EFUSED*) _r=111 ;;
	*) _r=2 ;;
	esac
	printf '%s\t%s\n' "$1" $_r
}


D=$B/data
[ -d "$D" ] || {
	e error no-base-dir "$D"
	e end 0
	exit 4
}

# The window counts from here (by /proc/uptime; without it the watchdog alone bounds it). The watchdog ends the
# script, saying why, when the window is over before a go-ahead came: a look that hangs (a frozen container) and
# a stream nobody answers leave nothing behind. Every exit after this point disarms it first (it holds stdout).
# Its sleep is killed with -9: disarmed at once (a fast look, stdin at EOF), the sleep may be between fork and
# exec, where it still has the watchdog's trap and would take a TERM for it, then sleep on holding stdout. $! is
# set before the trap can run (traps run between commands), where `s=$!` may not have run yet.
now && E=$((t + W))
(
	trap 'kill -9 $! 2>/dev/null; exit' TERM
	sleep $((W / 1000 + 1)) &
	wait $! && kill -9 $$ && e idle window && e end 0
) &
g=$!

# Pick the tool: batch senders first (one process for every socket), then the per-socket ones.
# processcontrol's interpreter is its pip/venv shebang's (`#!/path/python`; with arguments it is no path).
# ncat and OpenBSD nc bind a reply socket under /tmp: skipped where /tmp is not writable.
# nc may be OpenBSD netcat, Ncat, or a flavour without unix sockets (busybox, traditional): its help tells.
m=none
if h perl; then
	m=perl
elif h python3; then
	m=python3
	pc=python3
elif { read -r pc <"$(command -v processcontrol)"; } 2>/dev/null && pc=${pc#??} && [ -x "$pc" ] &&
	[ "${pc%python*}" != "$pc" ]; then
	m=processcontrol-python
elif ! [ -w /tmp ]; then
	h socat && m=socat || echo "$0: /tmp is not writable (ncat, nc)" >&2
elif h ncat; then
	m=ncat c='ncat --send-only --unixsock --udp --'
elif h nc && case $(nc -h 2>&1 </dev/null) in
	*Ncat*) c='nc --send-only --unixsock --udp --' ;;
	*[Nn][Ii][Xx]?[Dd]omain*) c='nc -uU -w 0 --' ;;
	*) false ;;
	esac; then
	m=nc
elif h socat; then
	m=socat
fi

# jp SOCKET: sets j (job) and p (process) from <data>/<job>/<process>_containerrun.sock.
jp() {
	f=${1%_containerrun.sock}
	p=${f##*/}
	f=${f%/*}
	j=${f##*/}
}

# Discover sockets: <data>/<job>/<process>_containerrun.sock; globbing is on only for this line.
set +f
set -- "$D"/*/*_containerrun.sock
set -f

# P: the wanted sockets, one a line, each after a 1 if its sentinel exists now, else 0. S: those to probe
# (their sentinel is gone: stopped, or stale?). n: how many are wanted. Set empty first: the container's
# environment may have a P or an S.
n=0 P= S=
for s; do
	jp "$s"
	# A name with a tab or newline cannot be reported on one line.
	case $j$p in
	*[$T$N]*) continue ;;
	esac
	[ -S "$s" ] && il "$j" "$J" && il "$p" "$K" || continue
	case $O in
	'*') ;;
	'') continue ;;
	# Quoted, so a name is compared as a string even when it holds pattern characters.
	*) case $N$O$N in *"$N$j/$p$N"*) ;; *) continue ;; esac ;;
	esac
	n=$((n + 1))
	if [ -e "${s%.sock}.running" ]; then
		P=${P}1$s$N
	else
		P=${P}0$s$N
		S=$S$s$N
	fi
done

# r PAYLOAD: send (or, with an empty PAYLOAD, probe) to the sockets in S in rounds. R collects every round's
# SOCKET<tab>RESULT lines, framed by newlines for the look-ups below; Q the sockets that took it. ENOENT (2) and
# ECONNREFUSED (111) get 3 more rounds 10, 30 and 60 ms apart: the Go original unlinks and rebinds its socket
# after every datagram. Per-socket tools run at most 8 at once.
r() {
	pl=$1
	IFS=$N
	# shellcheck disable=SC2086 # split on newlines only, globbing is off
	set -- $S
	R=$N
	Q=
	for d in .01 .03 .06 0; do
		[ $# = 0 ] && break
		IFS=$X
		case $m in
		none) o= ;;
		perl) o=$(perl -e "$PL" -- "$pl" "${F:-0}" "$@") ;;
		p*) o=$("$pc" -I -S -c "$PY" "$pl" "${F:-0}" "$@") ;;
		*)
			o=$(
				k=0
				for s; do
					y "$s" &
					k=$((k + 1))
					[ $k -lt 8 ] || {
						wait
						k=0
					}
				done
				wait
			)
			;;
		esac
		R=$R$o$N
		IFS=$N
		q=
		for s in $o; do
			case $s in
			*"${T}sent") Q=$Q${s%"$T"*}$N ;;
			*"${T}2" | *"${T}111") q=$q${s%"$T"*}$N ;;
			esac
		done
		set -- $q
		[ $# = 0 ] || z 60 $d
	done
	IFS=$X
}

# rep SENT REFUSED OTHER: a line for every socket in P: the word for its result in R, the sentinel now, the pid
# file (a regular file only: a FIFO there would block), the sentinel before.
rep() {
	IFS=$N
	for s in $P; do
		IFS=$X
		v=${s%"${s#?}"}
		s=${s#?}
		jp "$s"
		case $R in
		*"$N$s${T}sent$N"*) r=$1 ;;
		*"$N$s${T}111$N"*) r=$2 ;;
		*) r=$3 ;;
		esac
		u=0
		[ -e "${s%.sock}.running" ] && u=1
		i=
		f=$B/sys/run/bpm/$j/$p.pid
		[ -f "$f" ] && { IFS= read -r i <"$f"; } 2>/dev/null
		i=${i%"${i##*[0-9]}"}
		i=${i#"${i%%[0-9]*}"}
		case $i in
		'' | *[!0-9]*) i=- ;;
		esac
		e socket "$j" "$p" $r $u $i $v
	done
	IFS=$X
}

# The look: nothing is sent; sockets without a sentinel are probed (stopped, or refusing: stale).
e tool $m
r ''
rep probed stale probed
e ready $n

# The go-ahead (the watchdog is disarmed before anything is sent: once `wait` has seen it go, it can no longer
# kill anything, so nothing is ever cut off half sent).
IFS= read -r G || G=eof
kill $g 2>/dev/null
wait $g
IFS=$T
# shellcheck disable=SC2086 # split on tabs only, globbing is off
set -- $G
IFS=$X
a=$1
case $a in
STOP | START)
	case $2 in
	'' | *[!0-9]*) a=invalid ;;
	esac
	;;
'' | eof) a=eof ;;
*) a=invalid ;;
esac
[ $a != eof ] && [ "$E" ] && now && [ $t -gt $E ] && a=window
case $a in
STOP | START) ;;
*)
	e idle $a
	e end 0
	exit 0
	;;
esac
e go $a $2
shift 2
# F: nothing is sent after this (ms of uptime), however slow the sending: the grace (script.SEND_GRACE_S) counts
# from the go-ahead's arrival (t, read just above), which was within the window of the look the operator saw, so
# the operator may act otherwise once window + grace have passed since it saw the look.
[ "$E" ] && F=$((t + 10000))
# O: the pairs the go-ahead names, one a line, framed by newlines. P keeps only those; S gets all of them.
O=$N
for x; do
	O=$O$x$N
done
IFS=$N
q=
S=
n=0
for s in $P; do
	jp "${s#?}"
	case $O in
	*"$N$j/$p$N"*)
		q=$q$s$N
		S=$S${s#?}$N
		n=$((n + 1))
		;;
	esac
done
IFS=$X
P=$q

if [ $m = none ] && [ $n -gt 0 ]; then
	e error no-sender-tool perl,python3,processcontrol,ncat,nc,socat
	e end 0
	exit 3
fi
e tool $m
r $a

# Wait in the pod for the sockets that took the command: STOP until the sentinel is gone, START until it is
# there, at most M ms (by /proc/uptime, else counted in naps). Polls every 10 ms.
# Q: the sockets still on their way (filled by the send rounds); g: the action still pending for a socket in
# its present state.
[ $M = 0 ] && Q=
now && E=$((t + M))
w=0
while [ "$Q" ]; do
	IFS=$N
	q=
	for s in $Q; do
		[ -e "${s%.sock}.running" ] && g=STOP || g=START
		[ $a = $g ] && q=$q$s$N
	done
	IFS=$X
	Q=$q
	if [ "$E" ] && now; then
		[ $t -lt $E ]
	else
		[ $w -lt $M ]
	fi || break
	z 10 .01
	w=$((w + 10))
done

rep sent refused failed
e end $n
