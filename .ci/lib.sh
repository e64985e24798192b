# shellcheck shell=bash
# Functions shared by .ci/run and .ci/self-check; source it, do not run it.
#
# Every command CI runs goes through `run_isolated` (in a private IPC namespace when the
# machine allows one, under `timeout`, with a leak check) or `ci_step` (which times it and
# records the outcome). Both return the command's own failing status on every path, so a
# failing step can never be reported as passing: .ci/self-check proves it on each path.

# Which isolation run_isolated uses: NEOCORTEX_CI_ISOLATION = auto (default), ipc, userns or
# none. auto tries `unshare --ipc` (needs CAP_SYS_ADMIN), then a user namespace
# (`unshare --user --map-root-user --ipc`), then gives up isolation (the host namespace).
# Prints the mode; fails when a forced mode is not available here.
ci_isolation() {
  local want=${NEOCORTEX_CI_ISOLATION:-auto}
  case $want in
    ipc) unshare --ipc true 2>/dev/null && echo ipc ;;
    userns) unshare --user --map-root-user --ipc true 2>/dev/null && echo userns ;;
    none) echo none ;;
    auto)
      if unshare --ipc true 2>/dev/null; then
        echo ipc
      elif unshare --user --map-root-user --ipc true 2>/dev/null; then
        echo userns
      else
        echo none
      fi
      ;;
    *)
      echo "unknown NEOCORTEX_CI_ISOLATION=$want (auto, ipc, userns or none)" >&2
      return 2
      ;;
  esac
}

# The ids of every SysV object in this IPC namespace, one "kind:id" a line, sorted.
sysv_ids() {
  local kind file
  for kind in shm sem msg; do
    file=/proc/sysvipc/$kind
    [ -r "$file" ] || continue
    tail -n +2 "$file" | awk -v k="$kind" '{print k ":" $2}'
  done | sort
}

# Run inside the namespace by run_isolated: runs "$1" with bash (pipefail), then fails if
# any SysV object is left in the namespace (nothing else can have made it). Keeps the
# command's own status when it failed; 99 when it passed but leaked.
# shellcheck disable=SC2016
CI_INNER='bash -e -o pipefail -c "$1"
rc=$?
left=$( { tail -n +2 /proc/sysvipc/shm; tail -n +2 /proc/sysvipc/sem; tail -n +2 /proc/sysvipc/msg; } 2>/dev/null | wc -l)
if [ "$left" -gt 0 ]; then
  echo "LEAK: $left SysV object(s) left in the private IPC namespace:"
  ipcs -m -s -q 2>/dev/null || true
  if [ "${CI_ALLOW_LEFTOVERS:-0}" = 1 ]; then
    echo "(allowed for this step: the namespace and its objects go when it ends)"
  elif [ "$rc" -eq 0 ]; then
    rc=99
  fi
fi
exit "$rc"'

# run_isolated LIMIT_SECS COMMAND
#
# Runs the bash command line COMMAND under `timeout LIMIT_SECS` in a private IPC namespace
# (see ci_isolation) and checks that it left no SysV object. Returns COMMAND's status when it
# fails, 124 (or 137) when it timed out, 99 when it passed but leaked, 0 only when it passed
# and left nothing. Without a namespace, the leak check compares the host's ids before and
# after (ids that appeared and are still there after a second look).
run_isolated() {
  local limit=$1 cmd=$2 mode status=0
  mode=$(ci_isolation) || {
    echo "isolation '${NEOCORTEX_CI_ISOLATION:-auto}' is not available here"
    return 1
  }
  case $mode in
    ipc | userns)
      local -a ns=(unshare --ipc)
      [ "$mode" = userns ] && ns=(unshare --user --map-root-user --ipc)
      echo "(isolation: $mode, timeout ${limit}s)"
      timeout --kill-after=30 "$limit" "${ns[@]}" -- bash -c "$CI_INNER" ci-inner "$cmd" || status=$?
      ;;
    none)
      echo "(isolation: NONE, the host's IPC namespace; timeout ${limit}s)"
      local before after new left
      before=$(sysv_ids)
      timeout --kill-after=30 "$limit" bash -e -o pipefail -c "$cmd" || status=$?
      after=$(sysv_ids)
      new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
      if [ -n "$new" ]; then
        # Someone else's short-lived objects go away; ours stay. Look again.
        sleep 1
        left=$(comm -12 <(echo "$new") <(sysv_ids) | sed '/^$/d')
        if [ -n "$left" ]; then
          echo "LEAK: SysV object(s) that appeared during the step and are still there:"
          echo "$left"
          if [ "${CI_ALLOW_LEFTOVERS:-0}" = 1 ]; then
            echo "(allowed for this step; remove them with ipcrm)"
          elif [ "$status" -eq 0 ]; then
            status=99
          fi
        fi
      fi
      ;;
  esac
  case $status in
    124 | 137) echo "TIMED OUT after ${limit}s: $cmd" ;;
  esac
  return "$status"
}

# The steps run so far: "name|status|seconds" lines, printed by ci_summary.
CI_SUMMARY=()

# ci_step NAME -- COMMAND...
#
# Prints what runs, runs it (a function or a program, with its arguments), prints its wall
# time and status, and records both. Returns the command's status.
ci_step() {
  local name=$1 start status=0 secs
  shift
  [ "${1:-}" = -- ] && shift
  printf '\n== %s ==\n' "$name"
  printf 'ran: %s\n' "$*"
  start=$(date +%s)
  "$@" || status=$?
  secs=$(($(date +%s) - start))
  if [ "$status" -eq 0 ]; then
    printf -- '-- %s: ok in %ss\n' "$name" "$secs"
  else
    printf -- '-- %s: FAILED (status %s) after %ss\n' "$name" "$status" "$secs"
  fi
  CI_SUMMARY+=("$name|$status|$secs")
  return "$status"
}

ci_summary() {
  local line name status secs total=0
  printf '\n== summary: wall time per step ==\n'
  for line in "${CI_SUMMARY[@]}"; do
    IFS='|' read -r name status secs <<<"$line"
    total=$((total + secs))
    if [ "$status" -eq 0 ]; then
      printf '%6ss  ok      %s\n' "$secs" "$name"
    else
      printf '%6ss  FAILED  %s (status %s)\n' "$secs" "$name" "$status"
    fi
  done
  printf '%6ss  total\n' "$total"
}
