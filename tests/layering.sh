#!/usr/bin/env bash
# layering.sh - the architecture as a test: the source folders are floors, and every include and
# every call points down (or stays on its floor), never up, and no two files need each other.
#
#   base (0) <- networks (1) <- sim (2) <- planner (3) <- reports (4) <- cli, cuda_validate (5)
#
# Two programs share the top floor and must not use each other. Checked:
#   1. every `#include "x.h"` in those folders names a header of the same or a lower floor;
#   2. with OBJDIR (make test passes build/obj): every symbol a file's object uses is defined on
#      the same or a lower floor, and the file-level call graph has no cycle (tsort finds them).
# Each fault is one line naming the file, the include or symbol, and both floors.
#
# Usage: bash tests/layering.sh [OBJDIR]
# Deliberately not here: tests/, bench/ and python/, which sit above every floor.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OBJDIR=${1:-}

floor() {
    case $1 in
    base) echo 0 ;; networks) echo 1 ;; sim) echo 2 ;; planner) echo 3 ;; reports) echo 4 ;;
    cli | cuda_validate) echo 5 ;; *) echo -1 ;;
    esac
}
FOLDERS="base networks sim planner reports cli cuda_validate"

faults=0
fault() { printf 'FAIL  %s\n' "$1"; faults=$((faults + 1)); }

# header name -> folder (names are unique: the build puts every folder on the include path)
declare -A home
for d in $FOLDERS; do
    for h in "$d"/*.h; do
        [ -e "$h" ] || continue
        b=${h##*/}
        if [ -n "${home[$b]:-}" ]; then
            fault "$h: header name also used by ${home[$b]}/$b (includes would be ambiguous)"
        fi
        home[$b]=$d
    done
done

# allowed FROM TO: TO is on a lower floor, or is FROM itself
allowed() {
    [ "$1" = "$2" ] && return 0
    [ "$(floor "$2")" -lt "$(floor "$1")" ]
}

# ------------------------------------------------------------------ 1. includes
for d in $FOLDERS; do
    for f in "$d"/*.c "$d"/*.h "$d"/*.cu; do
        [ -e "$f" ] || continue
        while IFS=: read -r line inc; do
            to=${home[$inc]:-}
            if [ -z "$to" ]; then
                fault "$f:$line: #include \"$inc\" is not a header of base/ networks/ sim/ planner/ reports/ cli/ cuda_validate/"
            elif ! allowed "$d" "$to"; then
                fault "$f:$line: #include \"$inc\" climbs from $d/ (floor $(floor "$d")) to $to/ (floor $(floor "$to"))"
            fi
        done < <(awk '/^[[:space:]]*#[[:space:]]*include[[:space:]]*"/ {
                          split($0, q, "\""); print FNR ":" q[2] }' "$f")
    done
done

# ------------------------------------------------------------------ 2. calls
if [ -n "$OBJDIR" ]; then
    declare -A def
    objs=()
    for d in $FOLDERS; do
        for o in "$OBJDIR/$d"/*.o; do
            [ -e "$o" ] || continue
            src=${o#"$OBJDIR"/}
            src=${src%.o}
            # objects of files that no longer exist (a renamed source) are not part of the build
            [ -e "$src.c" ] || [ -e "$src.cu" ] || continue
            objs+=("$o")
            while read -r sym; do def[$sym]=$src; done < <(nm -P --defined-only -g "$o" 2>/dev/null |
                awk '$2 ~ /^[TDBRCV]$/ {print $1}')
        done
    done
    edges=$(mktemp)
    trap 'rm -f "$edges"' EXIT
    for o in "${objs[@]}"; do
        src=${o#"$OBJDIR"/}
        src=${src%.o}
        d=${src%%/*}
        while read -r sym; do
            to=${def[$sym]:-}
            [ -n "$to" ] || continue # libc, json-c, cgraph, CUDA
            td=${to%%/*}
            if ! allowed "$d" "$td"; then
                fault "$src: calls $sym, defined in $to, climbing from $d/ (floor $(floor "$d")) to $td/ (floor $(floor "$td"))"
            fi
            [ "$to" != "$src" ] && printf '%s %s\n' "$to" "$src" >>"$edges"
        done < <(nm -P -u "$o" 2>/dev/null | awk '{print $1}' | sort -u)
    done
    if [ "${#objs[@]}" -eq 0 ]; then
        fault "no objects under $OBJDIR/{$(echo "$FOLDERS" | tr ' ' ',')} (build first)"
    elif ! cycles=$(sort -u "$edges" | tsort 2>&1 >/dev/null); then
        fault "files that call each other (a circle): $(echo "$cycles" | grep -v 'input contains a loop' | sed 's/^tsort: //' | tr '\n' ' ')"
    fi
fi

if [ "$faults" -ne 0 ]; then
    echo "$faults layering fault(s)"
    exit 1
fi
echo "ok    layering: includes${OBJDIR:+ and calls} point down, no circles"
