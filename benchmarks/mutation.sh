#!/bin/sh
# Mutation testing (issue 12) of the pure device contract and the hub's pure modules with mutmut 3, in a scratch
# copy: the checkout's hub/ and devices/ are never rewritten. Prints killed / total per module, equivalent mutants
# excluded (benchmarks/mutation-equivalent.txt, one name and its reason a line).
# Needs mutmut 3: .venv/bin/pip install 'mutmut>=3.8,<4'
# Usage: benchmarks/mutation.sh [max parallel children, default 2]
# KEEP=1 keeps the scratch copy (its path is printed) to inspect survivors there: mutmut show <name>.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
children=${1:-2}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/labhub-mutation.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "scratch copy kept: $scratch"
else
    trap 'rm -rf "$scratch"' EXIT INT TERM
fi
cd "$root"
tar cf - hub devices firmware_sim tests config pyproject.toml | tar xf - -C "$scratch"
cd "$scratch"
find . -name __pycache__ -prune -exec rm -rf {} +
cat >> pyproject.toml <<'TOML'

[tool.mutmut]
source_paths = ["hub/", "devices/"]
only_mutate = ["devices/topics.py", "devices/kinds.py", "devices/problems.py", "devices/decode.py",
               "devices/validate.py", "devices/feedback.py", "devices/arm.py", "devices/serial_protocols.py",
               "devices/text.py", "hub/ingest/lineproto.py", "hub/adapters/influxql.py", "hub/access/policy.py",
               "hub/access/tokens.py", "hub/pace.py"]
also_copy = ["firmware_sim/", "config/"]
# The unit tests alone: pure, no service, seconds. The layout check is left out: mutmut's trampolines make the
# mutated modules longer than any module of the checkout.
pytest_add_cli_args = ["-p", "no:cacheprovider", "--ignore=tests/unit/test_layout.py"]
pytest_add_cli_args_test_selection = ["tests/unit"]
TOML
nice -n 10 "$py" -m mutmut run --max-children "$children" >mutmut-run.log 2>&1 || { tail -c 2000 mutmut-run.log; exit 1; }
"$py" -m mutmut results --all true >results.txt 2>&1
"$py" - "$root/benchmarks/mutation-equivalent.txt" results.txt <<'PY'
import collections, re, sys
equivalent = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("#"):
        name, _, reason = line.partition(" ")
        equivalent[name] = reason.strip()
counts = collections.defaultdict(collections.Counter)
survivors, seen = [], set()
for line in open(sys.argv[2], encoding="utf-8"):
    m = re.match(r"\s*(([\w.]+?)\.x[_\u01c1]\S*): (.+)$", line)  # module.x_function… or module.xǁClassǁmethod…
    if not m:
        continue
    name, module, status = m.groups()
    seen.add(name)
    if name in equivalent:
        counts[module]["equivalent"] += 1
        continue
    killed = status in ("killed", "timeout")  # a timeout is a mutant that hangs: caught
    counts[module]["killed" if killed else "alive"] += 1
    if not killed:
        survivors.append(f"{name}: {status}")
total = collections.Counter()
print(f"{'module':32} {'killed':>7} {'total':>6} {'equiv.':>6} {'score':>7}")
for module in sorted(counts):
    c = counts[module]
    n = c["killed"] + c["alive"]
    total.update(c)
    print(f"{module:32} {c['killed']:7} {n:6} {c['equivalent']:6} {100 * c['killed'] / n:6.1f}%")
n = total["killed"] + total["alive"]
print(f"{'all':32} {total['killed']:7} {n:6} {total['equivalent']:6} {100 * total['killed'] / n:6.1f}%")
print(f"\n{len(survivors)} surviving (not killed, not listed as equivalent):")
print("\n".join(survivors))
stale = sorted(set(equivalent) - seen)
if stale:
    print(f"\n{len(stale)} listed equivalent mutants no longer exist (the source changed: review the list):")
    print("\n".join(stale))
PY
