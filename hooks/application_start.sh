#!/bin/sh
exec /usr/local/bin/bingo-host hook "$LIFECYCLE_EVENT"
