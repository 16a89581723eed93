#!/usr/bin/env python3
"""Athena (kinesis-data, DataFusion) side by side with DuckDB on the same files.

Generates events as gzip JSON lines and as Parquet (snappy) in Firehose's key layout
(`<prefix>/YYYY/MM/DD/HH/<name>`), plus a small dimension table in both formats; puts every
file through S3 into a kinesis-data server (started here from the release binary, or an
already running one with --endpoint); creates Athena tables with DDL (partition projection
over the hour layout); then runs a fixed query set through the Athena API and the same
queries with DuckDB reading the local copies of the same files, checks both answer the same,
and prints both times. Deletes every file it made (local copies and the server's data dir)
unless --keep.

    cargo build --release -p kinesis-data
    python3 bench/athena_vs_duckdb.py --gb 2      # GB of JSON lines (uncompressed)

Needs boto3 and duckdb (installed here with pip when missing).
"""

import argparse
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def ensure(module, package):
    try:
        return __import__(module)
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", package]
        if subprocess.call(cmd) != 0:
            subprocess.check_call(cmd + ["--break-system-packages"])
        return __import__(module)


duckdb = ensure("duckdb", "duckdb")
boto3 = ensure("boto3", "boto3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "lake"
START = "2024/03/01/00"  # first hour of data (UTC)
BYTES_PER_ROW = 262  # average JSON line of the generator below, newline included
COUNTRIES = [
    ("US", "United States", "Americas"), ("CA", "Canada", "Americas"), ("MX", "Mexico", "Americas"),
    ("BR", "Brazil", "Americas"), ("AR", "Argentina", "Americas"), ("CL", "Chile", "Americas"),
    ("CO", "Colombia", "Americas"), ("PE", "Peru", "Americas"), ("GB", "United Kingdom", "Europe"),
    ("DE", "Germany", "Europe"), ("FR", "France", "Europe"), ("ES", "Spain", "Europe"),
    ("IT", "Italy", "Europe"), ("NL", "Netherlands", "Europe"), ("SE", "Sweden", "Europe"),
    ("NO", "Norway", "Europe"), ("PL", "Poland", "Europe"), ("PT", "Portugal", "Europe"),
    ("IE", "Ireland", "Europe"), ("CH", "Switzerland", "Europe"), ("JP", "Japan", "Asia"),
    ("CN", "China", "Asia"), ("IN", "India", "Asia"), ("KR", "South Korea", "Asia"),
    ("SG", "Singapore", "Asia"), ("ID", "Indonesia", "Asia"), ("TH", "Thailand", "Asia"),
    ("VN", "Vietnam", "Asia"), ("AU", "Australia", "Oceania"), ("NZ", "New Zealand", "Oceania"),
    ("ZA", "South Africa", "Africa"), ("NG", "Nigeria", "Africa"), ("EG", "Egypt", "Africa"),
    ("KE", "Kenya", "Africa"), ("MA", "Morocco", "Africa"), ("TR", "Turkey", "Europe"),
]
# Countries in the events that are not in the dimension table (the join drops them).
EXTRA = ["XX", "YY", "ZZ", "QQ"]


def hours(n):
    """The n hours from START as (yyyy, MM, dd, HH) strings."""
    import datetime as dt

    t = dt.datetime(2024, 3, 1, 0)
    return [(t + dt.timedelta(hours=i)).strftime("%Y/%m/%d/%H").split("/") for i in range(n)]


def generate(work, rows, hour_count, files_per_hour):
    """Writes json/…/*.gz, parquet/…/*.parquet and the dimension table; returns sizes."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    codes = [c[0] for c in COUNTRIES] + EXTRA
    codes_list = "[" + ", ".join(f"'{c}'" for c in codes) + "]"
    con.execute(
        "CREATE TABLE countries (code VARCHAR, name VARCHAR, region VARCHAR)",
    )
    con.executemany("INSERT INTO countries VALUES (?, ?, ?)", COUNTRIES)
    for sub in ["dim_json", "dim_parquet"]:
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    con.execute(f"COPY countries TO '{work}/dim_json/countries.json' (FORMAT JSON)")
    con.execute(f"COPY countries TO '{work}/dim_parquet/countries.parquet' (FORMAT PARQUET, COMPRESSION SNAPPY)")
    per_file = rows // (hour_count * files_per_hour)
    n = 0
    for h, (y, m, d, hh) in enumerate(hours(hour_count)):
        for f in range(files_per_hour):
            lo, hi = n, n + per_file
            n = hi
            base = h * 3600 + f * 3600 // files_per_hour
            name = f"events-1-{y}-{m}-{d}-{hh}-{f:02d}-00-00-{h:04d}{f:02d}"
            query = f"""
                SELECT i AS event_id,
                       strftime(TIMESTAMP '2024-03-01 00:00:00'
                                + to_seconds({base} + (i - {lo}) * {3600 // files_per_hour} // {per_file}),
                                '%Y-%m-%d %H:%M:%S') AS event_time,
                       (hash(i) % 100000)::BIGINT AS user_id,
                       {codes_list}[(1 + hash(i * 7) % {len(codes)})::BIGINT] AS country,
                       CASE WHEN hash(i * 13) % 100 < 60 THEN 'view'
                            WHEN hash(i * 13) % 100 < 85 THEN 'click'
                            WHEN hash(i * 13) % 100 < 97 THEN 'cart'
                            ELSE 'purchase' END AS event_type,
                       ((hash(i * 3) % 100000) / 100.0)::DOUBLE AS amount,
                       ['android', 'ios', 'web'][(1 + hash(i * 5) % 3)::BIGINT] AS device,
                       md5(i::VARCHAR) AS session,
                       '/products/' || (hash(i * 11) % 50000)::VARCHAR || '?ref=campaign-'
                           || (hash(i * 17) % 200)::VARCHAR AS url
                FROM range({lo}, {hi}) t(i)
            """
            for fmt, ext, opts in [
                ("json", "gz", "FORMAT JSON, COMPRESSION GZIP"),
                ("parquet", "parquet", "FORMAT PARQUET, COMPRESSION SNAPPY"),
            ]:
                d_ = os.path.join(work, fmt, y, m, d, hh)
                os.makedirs(d_, exist_ok=True)
                con.execute(f"COPY ({query}) TO '{d_}/{name}.{ext}' ({opts})")
    con.close()
    return n


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(binary, data_dir):
    port = free_port()
    log = open(os.path.join(os.path.dirname(data_dir), "server.log"), "w")
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/_kinesis-data/health", timeout=1)
            return proc, endpoint
        except Exception:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: see {log.name}")
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not become ready")


def clients(endpoint):
    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    from botocore.config import Config

    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    return boto3.client("s3", config=cfg, **kw), boto3.client("athena", config=cfg, **kw)


def upload(s3, work):
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="results")
    for sub in ["json", "parquet", "dim_json", "dim_parquet"]:
        for dirpath, _, files in os.walk(os.path.join(work, sub)):
            for f in files:
                path = os.path.join(dirpath, f)
                s3.upload_file(path, BUCKET, os.path.relpath(path, work))


def athena(a, sql, db="bench", fetch=True):
    """Runs sql; returns (rows without header, wall seconds, engine seconds, scanned bytes)."""
    t0 = time.perf_counter()
    qid = a.start_query_execution(
        QueryString=sql,
        QueryExecutionContext={"Database": db},
        ResultConfiguration={"OutputLocation": "s3://results/bench/"},
    )["QueryExecutionId"]
    while True:
        q = a.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
        state = q["Status"]["State"]
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    if state != "SUCCEEDED":
        raise SystemExit(f"{sql}: {state} {q['Status'].get('StateChangeReason')}")
    stats = q.get("Statistics", {})
    rows = []
    if fetch:
        token = None
        while True:
            kw = {"QueryExecutionId": qid, "MaxResults": 1000}
            if token:
                kw["NextToken"] = token
            r = a.get_query_results(**kw)
            rows += [[d.get("VarCharValue") for d in row["Data"]] for row in r["ResultSet"]["Rows"]]
            token = r.get("NextToken")
            if not token:
                break
        rows = rows[1:]
    return rows, wall, stats.get("EngineExecutionTimeInMillis", 0) / 1000, stats.get("DataScannedInBytes", 0)


def same(a_rows, d_rows):
    if len(a_rows) != len(d_rows):
        return False
    for ar, dr in zip(a_rows, d_rows):
        if len(ar) != len(dr):
            return False
        for av, dv in zip(ar, dr):
            if av is None or dv is None:
                if av is not None or dv is not None:
                    return False
                continue
            try:
                if not math.isclose(float(av), float(dv), rel_tol=1e-9, abs_tol=1e-6):
                    return False
            except ValueError:
                if str(av) != str(dv):
                    return False
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gb", type=float, default=2.0, help="GB of JSON lines before compression (default 2)")
    p.add_argument("--hours", type=int, default=48, help="hourly partitions (default 48)")
    p.add_argument("--files-per-hour", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="runs per query and engine; the best counts (default 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="DuckDB threads (default: all cores)")
    p.add_argument("--binary", default=os.path.join(ROOT, "target/release/kinesis-data"))
    p.add_argument("--endpoint", help="use a running server instead of starting --binary")
    p.add_argument("--work", help="where the files are made (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the files and the server's data")
    args = p.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="kd-athena-bench-")
    os.makedirs(work, exist_ok=True)
    proc = None
    try:
        rows = int(args.gb * 1e9 / BYTES_PER_ROW)
        t = time.perf_counter()
        rows = generate(work, rows, args.hours, args.files_per_hour)
        sizes = {s: du(os.path.join(work, s)) for s in ["json", "parquet"]}
        sample = next(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(work, "json")) for f in fs)
        import gzip

        with gzip.open(sample, "rb") as g:
            text = g.read()
        raw = len(text) / max(1, text.count(b"\n")) * rows
        print(
            f"generated {rows:,} events ({raw / 1e9:.2f} GB of JSON lines) in {time.perf_counter() - t:.0f} s: "
            f"gzip JSON {sizes['json'] / 1e6:,.0f} MB, "
            f"Parquet {sizes['parquet'] / 1e6:,.0f} MB, {args.hours} hours x {args.files_per_hour} files each",
            flush=True,
        )
        if args.endpoint:
            endpoint = args.endpoint
        else:
            proc, endpoint = start_server(args.binary, os.path.join(work, "server"))
        s3, a = clients(endpoint)
        t = time.perf_counter()
        upload(s3, work)
        print(f"uploaded through S3 in {time.perf_counter() - t:.0f} s", flush=True)

        last = hours(args.hours)[-1]
        cols = "event_id bigint, event_time string, user_id bigint, country string, event_type string, " \
               "amount double, device string, session string, url string"
        projection = (
            "TBLPROPERTIES ('projection.enabled'='true', 'projection.datehour.type'='date', "
            "'projection.datehour.format'='yyyy/MM/dd/HH', "
            f"'projection.datehour.range'='{START},NOW', 'projection.datehour.interval'='1', "
            "'projection.datehour.interval.unit'='HOURS', "
            "'storage.location.template'='s3://lake/{fmt}/${{datehour}}/')"
        )
        athena(a, "CREATE DATABASE bench", db="default")
        for fmt, storage in [
            ("json", "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'"),
            ("parquet", "STORED AS PARQUET"),
        ]:
            athena(
                a,
                f"CREATE EXTERNAL TABLE events_{fmt} ({cols}) PARTITIONED BY (datehour string) {storage} "
                f"LOCATION 's3://lake/{fmt}/' " + projection.format(fmt=fmt),
            )
            athena(
                a,
                f"CREATE EXTERNAL TABLE countries_{fmt} (code string, name string, region string) {storage} "
                f"LOCATION 's3://lake/dim_{fmt}/'",
            )

        # The partition-filtered count: the last 6 hours of 48 (an eighth of the data).
        part_hours = hours(args.hours)[-6:]
        lo, hi = "/".join(part_hours[0]), "/".join(last)
        queries = [
            ("count", "SELECT count(*) FROM {ev}"),
            ("selective filter", "SELECT event_id, amount FROM {ev} WHERE user_id = 4242 ORDER BY event_id"),
            (
                "group by",
                "SELECT event_type, count(*) AS n, round(avg(amount), 2) AS avg_amount FROM {ev} "
                "GROUP BY event_type ORDER BY event_type",
            ),
            (
                "top-N",
                "SELECT user_id, round(sum(amount), 2) AS total FROM {ev} GROUP BY user_id "
                "ORDER BY total DESC, user_id LIMIT 10",
            ),
            (
                "join",
                "SELECT c.region, count(*) AS n, round(sum(e.amount), 2) AS total FROM {ev} e "
                "JOIN {dim} c ON e.country = c.code GROUP BY c.region ORDER BY c.region",
            ),
            ("partition count", "SELECT count(*) FROM {ev} WHERE {partition}"),
        ]
        duck = duckdb.connect()
        duck.execute(f"SET threads = {args.threads}")
        json_cols = (
            "{event_id: 'BIGINT', event_time: 'VARCHAR', user_id: 'BIGINT', country: 'VARCHAR', "
            "event_type: 'VARCHAR', amount: 'DOUBLE', device: 'VARCHAR', session: 'VARCHAR', url: 'VARCHAR'}"
        )

        def duck_source(fmt, globs):
            if fmt == "json":
                return f"read_json({globs}, format='newline_delimited', columns={json_cols})"
            return f"read_parquet({globs})"

        results = []
        for fmt, ext in [("json", "gz"), ("parquet", "parquet")]:
            all_files = f"'{work}/{fmt}/*/*/*/*/*.{ext}'"
            part_files = "[" + ", ".join(f"'{work}/{fmt}/{'/'.join(h)}/*.{ext}'" for h in part_hours) + "]"
            dim = (
                f"read_json('{work}/dim_json/countries.json', format='newline_delimited', "
                "columns={code: 'VARCHAR', name: 'VARCHAR', region: 'VARCHAR'})"
                if fmt == "json"
                else f"read_parquet('{work}/dim_parquet/countries.parquet')"
            )
            for name, template in queries:
                a_sql = template.format(
                    ev=f"events_{fmt}",
                    dim=f"countries_{fmt}",
                    partition=f"datehour >= '{lo}' AND datehour <= '{hi}'",
                )
                src = part_files if name == "partition count" else all_files
                d_sql = template.format(ev=duck_source(fmt, src), dim=dim, partition="true")
                best_a, best_e, best_d, scanned, a_rows, d_rows = math.inf, math.inf, math.inf, 0, None, None
                for _ in range(args.reps):
                    a_rows, wall, engine, scanned = athena(a, a_sql)
                    best_a, best_e = min(best_a, wall), min(best_e, engine)
                    t = time.perf_counter()
                    d_rows = duck.execute(d_sql).fetchall()
                    best_d = min(best_d, time.perf_counter() - t)
                ok = same(a_rows, [list(r) for r in d_rows])
                results.append((fmt, name, best_a, best_e, best_d, scanned, ok, a_rows[:1]))
                print(
                    f"{fmt:8} {name:17} athena {best_a:7.2f} s (engine {best_e:6.2f} s, scanned "
                    f"{scanned / 1e6:8.1f} MB)  duckdb {best_d:7.2f} s  ratio {best_a / best_d:5.2f}  "
                    f"{'same answer' if ok else 'DIFFERENT ANSWER'} {a_rows[:1]}",
                    flush=True,
                )
        print()
        print("| format | query | kinesis-data Athena (s) | DuckDB (s) | ratio | DataScannedInBytes |")
        print("|---|---|---|---|---|---|")
        totals = {}
        for fmt, name, wall, engine, d, scanned, ok, _ in results:
            tot = totals.setdefault(fmt, [0.0, 0.0])
            tot[0] += wall
            tot[1] += d
            flag = "" if ok else " (answers differ)"
            print(f"| {fmt} | {name} | {wall:.2f} | {d:.2f} | {wall / d:.2f}x{flag} | {scanned / 1e6:,.1f} MB |")
        for fmt, (aw, dw) in totals.items():
            print(f"| {fmt} | **all six** | **{aw:.2f}** | **{dw:.2f}** | **{aw / dw:.2f}x** | |")
        if not all(r[6] for r in results):
            sys.exit(1)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
