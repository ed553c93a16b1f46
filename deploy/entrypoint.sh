#!/bin/sh
# The image's entry point. With no command: the real exporter when Twilio credentials are
# given, else the demo on the built-in simulator. Any other command goes to studio-exporter.
# exec: the exporter becomes PID 1 and receives SIGTERM itself.
set -eu
if [ "$#" -eq 0 ]; then
  if [ -n "${TWILIO_ACCOUNT_SID:-}" ]; then
    set -- run
  else
    set -- demo
  fi
fi
exec studio-exporter "$@"
