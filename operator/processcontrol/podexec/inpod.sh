# processcontrol in-pod script: POSIX sh (tested with dash and bash --posix), no tools beyond one sender.
#
# This readable file is the source; what each exec sends is its compact form (script.py drops comment lines,
# blank lines and leading tabs at import time). So: indent shell code with tabs only, never start a line of
# data (here-document, PY/PL program) with a tab or a `#`, and indent the embedded Python with spaces.
#
# Run as:  sh -c "$SCRIPT" processcontrol ACTION JOBS PROCESSES [WAIT_MS [ONLY]]
#   ACTION     STOP, START or STATUS
#   JOBS       comma-separated job names to act on; empty = all
#   PROCESSES  comma-separated process names to act on; empty = all
#   WAIT_MS    STOP/START: wait in the pod up to this many ms for the sentinels to reach the target; 0 = no wait
#   ONLY       `*` (default) = the filters alone; else JOB/PROCESS pairs one a line, also filtered; empty = none
#
# Values arrive only as positional arguments. They are compared as plain strings and never reach
# `eval`, a glob, a `case` pattern or a command line: hostile names are harmless.
#
# Output (stdout), tab-separated, one line each:
#   PCTL1 tool NAME                                       sender (STOP/START) or prober (STATUS) used, or none
#   PCTL1 socket JOB PROCESS RESULT RUNNING PID WAS       one per matching socket
#       RESULT   sent | refused | failed  (STOP/START)
#                probed | stale           (STATUS: stale = the socket refuses a connection; probed = it does not,
#                                          or the sentinel says running so nothing was probed, or no prober)
#       RUNNING  1 if <process>_containerrun.running exists at the end (after the send and the wait), else 0
#       PID      the number in <base>/sys/run/bpm/<job>/<process>.pid, or -
#       WAS      1 if the sentinel existed before anything was sent, else 0
#   PCTL1 error no-base-dir PATH                          exit 4
#   PCTL1 error no-sender-tool perl,python3,processcontrol,ncat,nc,socat   exit 3
#   PCTL1 end COUNT                                       always last: COUNT socket lines came before it
# Exit 0 otherwise, also when sockets refuse: the caller reads the lines. Usage errors exit 2, print nothing.
#
# Cost: the fast path starts one process per exec besides sh: one perl or python3 (or processcontrol's own
# Python, run with -I -S so it imports nothing of ours: `processcontrol send` costs ~140 ms of imports, its
# interpreter ~40 ms, perl ~15 ms) sends to every socket, retries and times out. Sentinels and pid files are
# read with shell built-ins. Only images with none of these fall back to one ncat/nc/socat per socket, at
# most 8 at once. STATUS sends nothing and probes (connects to) only sockets whose sentinel is gone, since
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
#   a action, J jobs filter, K processes filter, M wait in ms, O the `only` pairs, B base dir, X default IFS,
#   T tab, N newline, m the tool, c its argv (ncat, nc), pl the payload (empty = probe only), w ms waited.
a=$1
J=$2
K=$3
M=${4:-0}
O=${5-*}
B=${CONTAINERRUN_BASE_DIR:-/var/vcap}
X=$IFS
# A literal tab: $(printf '\t') would cost a fork.
T='	'
N='
'

# Batch senders, argv = PAYLOAD SOCKET...; an empty PAYLOAD connects only (the STATUS probe). They print
# SOCKET<tab>sent or SOCKET<tab>ERRNO per socket; a send blocked by a full receive queue times out after 1 s.
# Linux numbers keep them short (containers are Linux): AF_UNIX 1, SOCK_DGRAM 2, sockaddr_un = u16 family + path;
# SOL_SOCKET 1, SO_SNDTIMEO 21 (x86, arm, s390x; elsewhere setsockopt fails and the send has no timeout).
PY='import socket,sys
p,*q=sys.argv[1:]
for f in q:
 s=socket.socket(1,2);s.settimeout(1)
 try:s.connect(f);p and s.send(p.encode()+b"\n");e="sent"
 except OSError as x:e=x.errno
 print(f,e,sep="\t")'
PL='($p,@q)=@ARGV;for(@q){socket$s,1,2,0;setsockopt$s,1,21,pack"l!l!",1,0;
print"$_\t",connect($s,pack"Sa*",1,$_)&&(!length$p||send$s,"$p\n",0)?sent:0+$!,"\n"}'

case $a$M in
STOP* | START* | STATUS*) [ "$M" -ge 0 ] 2>/dev/null ;;
*) false ;;
esac || {
	echo "usage: $0 ACTION JOBS PROCESSES [MS [ONLY]]" >&2
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

# P: the wanted sockets, one a line, each after a 1 if its sentinel exists now (before anything is sent), else 0.
# S: those to send to (STOP/START) or to probe (STATUS: the sentinel is gone). n: how many are wanted.
n=0
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
		[ $a = STATUS ] && continue
	else
		P=${P}0$s$N
	fi
	S=$S$s$N
done

if [ $a != STATUS ] && [ $m = none ] && [ $n -gt 0 ]; then
	e error no-sender-tool perl,python3,processcontrol,ncat,nc,socat
	e end 0
	exit 3
fi
e tool $m

# Send (or probe) in rounds: R collects every round's SOCKET<tab>RESULT lines, framed by newlines for the
# look-ups below. ENOENT (2) and ECONNREFUSED (111) get 3 more rounds 10, 30 and 60 ms apart: the Go original
# unlinks and rebinds its socket after every datagram. Per-socket tools run at most 8 at once.
pl=$a
[ $a = STATUS ] && pl=
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
	perl) o=$(perl -e "$PL" -- "$pl" "$@") ;;
	p*) o=$("$pc" -I -S -c "$PY" "$pl" "$@") ;;
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

# Wait in the pod for the sockets that took the command: STOP until the sentinel is gone, START until it is
# there, at most M ms (by /proc/uptime, else counted in naps). Polls every 10 ms.
# Q: the sockets still on their way (filled by the send rounds); g: the action still pending for a socket in
# its present state.
[ $a = STATUS ] || [ $M = 0 ] && Q=
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

# Report every wanted socket: result, sentinel now, pid file, sentinel before. $1 $2 $3: the words for
# sent, refused and anything else.
set -- sent refused failed
[ $a = STATUS ] && set -- probed stale probed
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
	{ IFS= read -r i <"$B/sys/run/bpm/$j/$p.pid"; } 2>/dev/null
	i=${i%"${i##*[0-9]}"}
	i=${i#"${i%%[0-9]*}"}
	case $i in
	'' | *[!0-9]*) i=- ;;
	esac
	e socket "$j" "$p" $r $u $i $v
done
e end $n
