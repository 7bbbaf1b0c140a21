#!/bin/sh
# index.cgi: the guest's answer on port 80 (busybox httpd runs it for "/"): one line,
# "<hostname>/tcp/80/<client address>", as the lab's namespace VMs answer: which VM answered, and
# the source address it saw (what a port forward or a floating IP must keep or rewrite).
client=${REMOTE_ADDR#[}
client=${client%]}
printf 'Content-Type: text/plain\r\n\r\n%s/tcp/80/%s\n' "$(hostname)" "${client#::ffff:}"
