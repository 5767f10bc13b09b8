"""Tests of bq-ingest's patch to local-bigquery, straight against the running emulators over REST.

Run with the dev stack up (`scripts/dev-stack.sh up`; its env exported):

    python3 scripts/dev-stack/local-bigquery/test_patch.py

One test per behaviour the patch adds (see README.md next to this file). Standard library only.
"""

import concurrent.futures
import gzip
import json
import os
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

BIGQUERY = os.environ["BIGQUERY_EMULATOR_HOST"].rstrip("/")
STORAGE = os.environ["STORAGE_EMULATOR_HOST"].rstrip("/")
PROJECT = os.environ.get("GOOGLE_CLOUD_PROJECT", "local-project")
BUCKET = os.environ.get("INGEST_BUCKET", "ingest-bucket")
API = f"{BIGQUERY}/bigquery/v2/projects/{PROJECT}"


def call(method: str, url: str, body=None, data: bytes | None = None) -> tuple[int, dict]:
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        with error:
            text = error.read()
        return error.code, json.loads(text) if text else {}


def upload(name: str, content: bytes) -> str:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    status, _ = call("POST", f"{STORAGE}/upload/storage/v1/b/{BUCKET}/o?{query}", data=content)
    assert status == 200, f"upload gs://{BUCKET}/{name}: {status}"
    return f"gs://{BUCKET}/{name}"


def run_job(configuration: dict, job_id: str | None = None) -> dict:
    job_id = job_id or f"patch_{uuid.uuid4().hex}"
    body = {"jobReference": {"projectId": PROJECT, "jobId": job_id}, "configuration": configuration}
    status, job = call("POST", f"{API}/jobs", body)
    assert status == 200, f"jobs.insert {job_id}: {status} {job}"
    while job["status"]["state"] != "DONE":
        _, job = call("GET", f"{API}/jobs/{job_id}")
    return job


def query(sql: str, **configuration) -> dict:
    return run_job({"query": {"query": sql, "useLegacySql": False, **configuration}})


def rows(sql: str) -> list[list]:
    job = query(sql)
    assert "errorResult" not in job["status"], job["status"]
    status, result = call("GET", f"{API}/queries/{job['jobReference']['jobId']}")
    assert status == 200, result
    return [[cell["v"] for cell in row["f"]] for row in result.get("rows", [])]


def error_of(job: dict) -> str:
    return (job["status"].get("errorResult") or {}).get("message", "")


class Case(unittest.TestCase):
    """Each test gets its own dataset and GCS folder."""

    def setUp(self):
        self.dataset = f"patch_{uuid.uuid4().hex[:12]}"
        self.folder = f"patch-tests/{self.dataset}"
        status, body = call(
            "POST", f"{API}/datasets", {"datasetReference": {"projectId": PROJECT, "datasetId": self.dataset}}
        )
        self.assertEqual(status, 200, body)

    def table(self, table_id: str, fields: list[tuple[str, str]], **resource):
        body = {
            "tableReference": {"projectId": PROJECT, "datasetId": self.dataset, "tableId": table_id},
            "schema": {"fields": [{"name": n, "type": t} for n, t in fields]},
            **resource,
        }
        status, created = call("POST", f"{API}/datasets/{self.dataset}/tables", body)
        self.assertEqual(status, 200, created)
        return f"`{PROJECT}.{self.dataset}.{table_id}`"

    def file(self, name: str, content: bytes) -> str:
        return upload(f"{self.folder}/{name}", content)

    def destination(self, table_id: str) -> dict:
        return {"projectId": PROJECT, "datasetId": self.dataset, "tableId": table_id}


class ExternalTables(Case):
    def csv(self, **options) -> dict:
        return {
            "sourceFormat": "CSV",
            "sourceUris": [self.file("a.csv", b"1|x\n2|y\n"), self.file("b.csv", b"3|z\n")],
            "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "v", "type": "STRING"}]},
            "csvOptions": {"fieldDelimiter": "|", **options},
        }

    def test_csv_with_schema_and_options(self):
        result = query(
            "SELECT sum(id) AS s, string_agg(v, '' ORDER BY v) AS vs FROM temp_ext",
            tableDefinitions={"temp_ext": self.csv()},
        )
        self.assertNotIn("errorResult", result["status"], result["status"])
        _, page = call("GET", f"{API}/queries/{result['jobReference']['jobId']}")
        self.assertEqual([c["v"] for c in page["rows"][0]["f"]], ["6", "xyz"])

    def test_skip_leading_rows(self):
        definition = self.csv(skipLeadingRows="1")
        definition["sourceUris"] = [self.file("h.csv", b"id|v\n7|q\n")]
        job = query("SELECT id FROM temp_ext", tableDefinitions={"temp_ext": definition})
        _, page = call("GET", f"{API}/queries/{job['jobReference']['jobId']}")
        self.assertEqual([r["f"][0]["v"] for r in page["rows"]], ["7"])

    def test_wildcard_and_autodetect(self):
        self.file("w/part-1.csv", b"id,v\n1,a\n")
        self.file("w/part-2.csv", b"id,v\n2,b\n")
        definition = {
            "sourceFormat": "CSV",
            "autodetect": True,
            "sourceUris": [f"gs://{BUCKET}/{self.folder}/w/part-*.csv"],
            "csvOptions": {"skipLeadingRows": "1"},
        }
        job = query("SELECT count(*) AS n, sum(id) AS s FROM temp_ext", tableDefinitions={"temp_ext": definition})
        self.assertNotIn("errorResult", job["status"], job["status"])
        _, page = call("GET", f"{API}/queries/{job['jobReference']['jobId']}")
        self.assertEqual([c["v"] for c in page["rows"][0]["f"]], ["2", "3"])

    def test_gzipped_csv_and_json_and_file_name(self):
        gz = self.file("g.csv.gz", gzip.compress(b"5|e\n"))
        job = query(
            "SELECT id, _FILE_NAME AS f FROM temp_ext",
            tableDefinitions={"temp_ext": self.csv() | {"sourceUris": [gz]}},
        )
        self.assertNotIn("errorResult", job["status"], job["status"])
        _, page = call("GET", f"{API}/queries/{job['jobReference']['jobId']}")
        self.assertEqual([c["v"] for c in page["rows"][0]["f"]], ["5", gz])
        ndjson = self.file("n.json", b'{"id": 1, "v": "j"}\n{"id": 2, "v": "k"}\n')
        definition = {
            "sourceFormat": "NEWLINE_DELIMITED_JSON",
            "sourceUris": [ndjson],
            "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "v", "type": "STRING"}]},
        }
        self.assertEqual(rows_of(query("SELECT max(v) FROM j", tableDefinitions={"j": definition})), [["k"]])

    def test_hive_partitioning_columns(self):
        uri = self.file("hive/dt=2024-01-02/part.csv", b"1|x\n")
        definition = self.csv() | {
            "sourceUris": [uri],
            "hivePartitioningOptions": {"mode": "AUTO", "sourceUriPrefix": f"gs://{BUCKET}/{self.folder}/hive"},
        }
        result = rows_of(query("SELECT id, CAST(dt AS STRING) FROM temp_ext", tableDefinitions={"temp_ext": definition}))
        self.assertEqual(result, [["1", "2024-01-02"]])

    def test_dml_into_a_destination_reports_affected_rows(self):
        target = self.table("t", [("id", "INTEGER"), ("v", "STRING")])
        job = query(f"INSERT {target} (id, v) SELECT id, v FROM temp_ext", tableDefinitions={"temp_ext": self.csv()})
        self.assertNotIn("errorResult", job["status"], job["status"])
        self.assertEqual(job["statistics"]["query"]["numDmlAffectedRows"], "3")
        job = query(
            f"UPDATE {target} d SET v = CONCAT(d.v, s.v) FROM temp_ext s WHERE d.id = s.id",
            tableDefinitions={"temp_ext": self.csv()},
        )
        self.assertEqual(job["statistics"]["query"]["numDmlAffectedRows"], "3", job["status"])
        job = query(
            f"MERGE {target} d USING temp_ext s ON d.id = s.id WHEN MATCHED THEN DELETE",
            tableDefinitions={"temp_ext": self.csv()},
        )
        self.assertEqual(job["statistics"]["query"]["numDmlAffectedRows"], "3", job["status"])
        self.assertEqual(rows(f"SELECT count(*) FROM {target}"), [["0"]])

    def test_the_definition_is_for_that_query_only(self):
        query("SELECT 1 FROM temp_ext", tableDefinitions={"temp_ext": self.csv()})
        job = query("SELECT 1 FROM temp_ext")
        self.assertIn("temp_ext", error_of(job))


def rows_of(job: dict) -> list[list]:
    assert "errorResult" not in job["status"], job["status"]
    _, page = call("GET", f"{API}/queries/{job['jobReference']['jobId']}")
    return [[cell["v"] for cell in row["f"]] for row in page.get("rows", [])]


class PartitionDecorators(Case):
    def load(self, table_id: str, content: bytes, disposition: str) -> dict:
        uri = self.file(f"{uuid.uuid4().hex}.csv", content)
        return run_job(
            {
                "load": {
                    "sourceUris": [uri],
                    "destinationTable": self.destination(table_id),
                    "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "ts", "type": "TIMESTAMP"}]},
                    "writeDisposition": disposition,
                }
            }
        )

    def hourly(self) -> str:
        return self.table(
            "h", [("id", "INTEGER"), ("ts", "TIMESTAMP")], timePartitioning={"type": "HOUR", "field": "ts"}
        )

    def test_truncate_replaces_only_that_partition(self):
        table = self.hourly()
        one = b"1,2017-04-11 01:10:00\n2,2017-04-11 01:20:00\n"
        two = b"3,2017-04-11 02:10:00\n"
        for decorator, content in (("2017041101", one), ("2017041102", two)):
            job = self.load(f"h${decorator}", content, "WRITE_TRUNCATE")
            self.assertNotIn("errorResult", job["status"], job["status"])
        job = self.load("h$2017041101", b"9,2017-04-11 01:59:59\n", "WRITE_TRUNCATE")
        self.assertNotIn("errorResult", job["status"], job["status"])
        self.assertEqual(rows(f"SELECT id FROM {table} ORDER BY id"), [["3"], ["9"]])
        status, _ = call("GET", f"{API}/datasets/{self.dataset}/tables/h$2017041101")
        self.assertEqual(status, 404, "no table named after the decorator")

    def test_append_appends_and_rows_must_fit_the_partition(self):
        table = self.hourly()
        self.load("h$2017041101", b"1,2017-04-11 01:10:00\n", "WRITE_APPEND")
        self.load("h$2017041101", b"2,2017-04-11 01:11:00\n", "WRITE_APPEND")
        self.assertEqual(rows(f"SELECT count(*) FROM {table}"), [["2"]])
        job = self.load("h$2017041101", b"3,2017-04-11 05:00:00\n", "WRITE_APPEND")
        self.assertIn("different partitions", error_of(job))
        job = self.load("h$20170411", b"3,2017-04-11 01:00:00\n", "WRITE_APPEND")
        self.assertIn("partitioned by HOUR", error_of(job))

    def test_a_decorator_on_an_unpartitioned_table_is_an_error(self):
        self.table("plain", [("id", "INTEGER"), ("ts", "TIMESTAMP")])
        job = self.load("plain$20170411", b"1,2017-04-11 01:00:00\n", "WRITE_APPEND")
        self.assertIn("not partitioned", error_of(job))

    def test_ingestion_time_partition(self):
        table = self.table("it", [("id", "INTEGER"), ("ts", "TIMESTAMP")], timePartitioning={"type": "DAY"})
        self.load("it$20170411", b"1,2017-04-11 01:00:00\n", "WRITE_APPEND")
        self.load("it$20170412", b"2,2017-04-12 01:00:00\n", "WRITE_APPEND")
        self.load("it$20170411", b"3,2017-04-11 02:00:00\n", "WRITE_TRUNCATE")
        self.assertEqual(
            rows(f"SELECT id, CAST(DATE(_PARTITIONTIME) AS STRING) FROM {table} ORDER BY id"),
            [["2", "2017-04-12"], ["3", "2017-04-11"]],
        )

    def test_query_destination_with_a_decorator(self):
        table = self.hourly()
        self.load("h$2017041101", b"1,2017-04-11 01:10:00\n", "WRITE_APPEND")
        job = query(
            "SELECT 7 AS id, TIMESTAMP '2017-04-11 01:30:00' AS ts",
            destinationTable=self.destination("h$2017041101"),
            writeDisposition="WRITE_TRUNCATE",
        )
        self.assertNotIn("errorResult", job["status"], job["status"])
        self.assertEqual(rows(f"SELECT id FROM {table}"), [["7"]])


ID = {"fields": [{"name": "id", "type": "INTEGER"}]}
ID_V = {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "v", "type": "STRING"}]}


class FirstJobs(Case):
    """Runs first (see `load_tests`): against a freshly started emulator, the first concurrent
    jobs that read gs:// each created the GCS secret, and all but one failed with DuckDB's
    "Catalog write-write conflict on create with "gcs_emulator"". Later jobs found it made."""

    def test_the_first_concurrent_loads_do_not_conflict(self):
        tables = [self.table(f"c{i}", [("id", "INTEGER")]) for i in range(16)]
        uri = self.file("c.csv", b"1\n2\n")
        configs = [
            {"load": {"sourceUris": [uri], "destinationTable": self.destination(f"c{i}"), "schema": ID}}
            for i in range(16)
        ]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            jobs = list(pool.map(run_job, configs))
        self.assertEqual([error_of(j) for j in jobs], [""] * 16)
        for table in tables:
            self.assertEqual(rows(f"SELECT count(*) FROM {table}"), [["2"]])


class Jobs(Case):
    def test_a_concurrent_duplicate_job_id_runs_once(self):
        table = self.table("t", [("id", "INTEGER")])
        uri = self.file("one.csv", b"1\n")
        job_id = f"dup_{uuid.uuid4().hex}"
        body = {
            "jobReference": {"projectId": PROJECT, "jobId": job_id},
            "configuration": {
                "load": {"sourceUris": [uri], "destinationTable": self.destination("t"), "schema": ID}
            },
        }
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(lambda _: call("POST", f"{API}/jobs", body)[0], range(8)))
        self.assertEqual(statuses, [200] + [409] * 7)
        while call("GET", f"{API}/jobs/{job_id}")[1]["status"]["state"] != "DONE":
            pass
        self.assertEqual(rows(f"SELECT count(*) FROM {table}"), [["1"]])

    def test_a_concurrent_create_of_one_table_is_409_for_all_but_one(self):
        body = {
            "tableReference": {"projectId": PROJECT, "datasetId": self.dataset, "tableId": "state"},
            "schema": ID,
            "timePartitioning": {"type": "DAY"},
        }
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(
                pool.map(lambda _: call("POST", f"{API}/datasets/{self.dataset}/tables", body)[0], range(8))
            )
        self.assertEqual(statuses, [200] + [409] * 7)

    def test_a_load_error_names_the_file(self):
        self.table("t", [("id", "INTEGER"), ("v", "STRING")])
        good = self.file("good.csv", b"1,a\n")
        bad = self.file("bad.csv", b"1,a\n2,b,c,d\n")
        job = run_job(
            {"load": {"sourceUris": [good, bad], "destinationTable": self.destination("t"), "schema": ID_V}}
        )
        errors = job["status"].get("errors", [])
        self.assertTrue(errors, job["status"])
        self.assertIn(bad, [e.get("location") for e in errors], errors)
        self.assertIn(f"File: {bad}", error_of(job))


def load_tests(loader, tests, pattern):
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(FirstJobs))
    for case in (ExternalTables, PartitionDecorators, Jobs):
        suite.addTests(loader.loadTestsFromTestCase(case))
    return suite


if __name__ == "__main__":
    unittest.main(verbosity=2)
