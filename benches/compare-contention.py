#!/usr/bin/env python3
# Compares two contention.csv files written by `shardkv bench` (same configurations), row by
# row: ops/s before, after, and the ratio, with the geometric mean over all rows.
# Usage: benches/compare-contention.py BEFORE.csv AFTER.csv
import csv, sys
def load(p):
    r={}
    for row in csv.DictReader(open(p)):
        k=(row['workload'],row['shards'],row['procs'],row['threads'],row['mode'])
        r[k]=row
    return r
b=load(sys.argv[1]); a=load(sys.argv[2])
print("| workload | shards | threads | mode | before ops/s | after ops/s | after ÷ before | verified |")
print("|---|--:|--:|---|--:|--:|--:|---|")
rs=[]
for k in a:
    ob=float(b[k]['ops_per_sec']); oa=float(a[k]['ops_per_sec']); rs.append(oa/ob)
    print(f"| {k[0]} | {k[1]} | {k[3]} | {k[4]} | {ob:.0f} | {oa:.0f} | {oa/ob:.2f}x | {a[k]['verified']} |")
import math
print(f"\ngeometric mean after ÷ before over {len(rs)} configurations: {math.exp(sum(map(math.log,rs))/len(rs)):.2f}x; lowest {min(rs):.2f}x")
