#!/usr/bin/env python3
"""Cut a slice of a Standard Workload Format trace, keeping its header.

    python benchmarks/slice_swf.py SOURCE.swf.gz OUT.swf.gz FROM_DAY TO_DAY

Writes the source's header lines unchanged, a comment saying what was cut,
then the job lines submitted from FROM_DAY to TO_DAY days after the
source's first job, unchanged (times are not rebased: the simulator takes
them from the first job of the file).  The shipped
vacagent/sim/scenarios/traces/LPC-EGEE-2004-1.2-cln-days85-88.swf.gz was made with

    python benchmarks/slice_swf.py /work/shared/traces/LPC-EGEE-2004-1.2-cln.swf.gz \\
        vacagent/sim/scenarios/traces/LPC-EGEE-2004-1.2-cln-days85-88.swf.gz 85 88

from the Parallel Workloads Archive's file (see that directory's NOTICE for
the citation and acknowledgement the archive asks for).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    source, out, start_day, end_day = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    header, kept, first, count = [], [], None, 0
    with gzip.open(source, "rt") as f:
        for line in f:
            if line.startswith(";"):
                header.append(line)
                continue
            fields = line.split()
            if not fields:
                continue
            count += 1
            submit = float(fields[1])
            first = submit if first is None else first
            if start_day * 86400 <= submit - first < end_day * 86400:
                kept.append(line)
    note = [
        ";\n",
        f"; vacagent slice: the {len(kept)} jobs (of {count}) submitted {start_day:g} to {end_day:g} days after\n",
        f";   the first job of {source.name}, lines unchanged; header above unchanged.\n",
        ";   Made with benchmarks/slice_swf.py; cite and acknowledge as in NOTICE beside this file.\n",
        ";\n",
    ]
    # mtime=0: the same slice gives the same bytes
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write("".join(header + note + kept).encode())
    print(f"{out}: {len(kept)} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
