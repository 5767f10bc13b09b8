//! Counting API requests per operation.

/// A BigQuery REST operation, as counted by [`RequestStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `jobs.insert` (POST `/projects/{p}/jobs`).
    JobsInsert,
    /// `jobs.get`.
    JobsGet,
    /// `jobs.list` (child jobs).
    JobsList,
    /// `jobs.query` (POST `/projects/{p}/queries`).
    JobsQuery,
    /// `jobs.getQueryResults` (paging or waiting for a `jobs.query`).
    JobsGetQueryResults,
    /// `tables.get` issued by the helpers.
    TablesGet,
    /// `tables.get` issued only to fill a load's schema against an emulator
    /// ([`SchemaFill::FromTable`](crate::SchemaFill::FromTable)).
    TablesGetSchemaFill,
    /// `tables.insert`.
    TablesInsert,
    /// `datasets.insert`.
    DatasetsInsert,
    /// `tabledata.insertAll`.
    TabledataInsertAll,
}

impl Operation {
    /// The REST method name, e.g. `jobs.insert`.
    pub fn method_name(self) -> &'static str {
        match self {
            Operation::JobsInsert => "jobs.insert",
            Operation::JobsGet => "jobs.get",
            Operation::JobsList => "jobs.list",
            Operation::JobsQuery => "jobs.query",
            Operation::JobsGetQueryResults => "jobs.getQueryResults",
            Operation::TablesGet => "tables.get",
            Operation::TablesGetSchemaFill => "tables.get (schema fill)",
            Operation::TablesInsert => "tables.insert",
            Operation::DatasetsInsert => "datasets.insert",
            Operation::TabledataInsertAll => "tabledata.insertAll",
        }
    }
}

/// How many HTTP requests a [`BigQueryWarehouse`](crate::BigQueryWarehouse) sent, per
/// operation: a view of the client layer's counters. Every attempt counts, retries included
/// (they are also counted in `retries`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `jobs.insert` requests.
    pub jobs_insert: u64,
    /// `jobs.get` requests.
    pub jobs_get: u64,
    /// `jobs.list` requests.
    pub jobs_list: u64,
    /// `jobs.query` requests.
    pub jobs_query: u64,
    /// `jobs.getQueryResults` requests.
    pub jobs_get_query_results: u64,
    /// `tables.get` requests of the helpers.
    pub tables_get: u64,
    /// `tables.get` requests made only to fill a load's schema (emulator only).
    pub tables_get_schema_fill: u64,
    /// `tables.insert` requests.
    pub tables_insert: u64,
    /// `datasets.insert` requests.
    pub datasets_insert: u64,
    /// `tabledata.insertAll` requests.
    pub tabledata_insert_all: u64,
    /// Of all the above, how many were retries of a failed attempt.
    pub retries: u64,
}

impl RequestStats {
    /// All requests sent.
    pub fn total(&self) -> u64 {
        self.jobs_insert
            + self.jobs_get
            + self.jobs_list
            + self.jobs_query
            + self.jobs_get_query_results
            + self.tables_get
            + self.tables_get_schema_fill
            + self.tables_insert
            + self.datasets_insert
            + self.tabledata_insert_all
    }

    /// The requests sent since `earlier` (a previous snapshot of the same warehouse), e.g. to
    /// count the requests of one batch.
    ///
    /// ```
    /// use ingest_bigquery::RequestStats;
    /// let before = RequestStats { jobs_get: 2, ..Default::default() };
    /// let after = RequestStats { jobs_get: 5, jobs_insert: 1, ..Default::default() };
    /// let batch = after.since(&before);
    /// assert_eq!((batch.jobs_get, batch.jobs_insert, batch.total()), (3, 1, 4));
    /// ```
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        RequestStats {
            jobs_insert: self.jobs_insert.saturating_sub(earlier.jobs_insert),
            jobs_get: self.jobs_get.saturating_sub(earlier.jobs_get),
            jobs_list: self.jobs_list.saturating_sub(earlier.jobs_list),
            jobs_query: self.jobs_query.saturating_sub(earlier.jobs_query),
            jobs_get_query_results: self
                .jobs_get_query_results
                .saturating_sub(earlier.jobs_get_query_results),
            tables_get: self.tables_get.saturating_sub(earlier.tables_get),
            tables_get_schema_fill: self
                .tables_get_schema_fill
                .saturating_sub(earlier.tables_get_schema_fill),
            tables_insert: self.tables_insert.saturating_sub(earlier.tables_insert),
            datasets_insert: self.datasets_insert.saturating_sub(earlier.datasets_insert),
            tabledata_insert_all: self
                .tabledata_insert_all
                .saturating_sub(earlier.tabledata_insert_all),
            retries: self.retries.saturating_sub(earlier.retries),
        }
    }
}

impl RequestStats {
    /// The view of the client layer's counts for the BigQuery service.
    pub(crate) fn of(counts: &ingest_google::RequestCounts) -> RequestStats {
        let counts = counts.of_service("bigquery");
        let get = |op: Operation| counts.calls(op.method_name());
        RequestStats {
            jobs_insert: get(Operation::JobsInsert),
            jobs_get: get(Operation::JobsGet),
            jobs_list: get(Operation::JobsList),
            jobs_query: get(Operation::JobsQuery),
            jobs_get_query_results: get(Operation::JobsGetQueryResults),
            tables_get: get(Operation::TablesGet),
            tables_get_schema_fill: get(Operation::TablesGetSchemaFill),
            tables_insert: get(Operation::TablesInsert),
            datasets_insert: get(Operation::DatasetsInsert),
            tabledata_insert_all: get(Operation::TabledataInsertAll),
            retries: counts.total_retries(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest_google::{RequestCounters, StatusClass};

    #[test]
    fn stats_are_a_view_of_the_layer_counts_per_operation() {
        let counters = RequestCounters::default();
        let record = |op: Operation, retry| {
            counters.record("bigquery", op.method_name(), StatusClass::Success, retry)
        };
        record(Operation::JobsInsert, false);
        record(Operation::JobsInsert, true);
        record(Operation::TablesGetSchemaFill, false);
        counters.record("storage", "objects.list", StatusClass::Success, true);
        let stats = RequestStats::of(&counters.snapshot());
        assert_eq!(stats.jobs_insert, 2);
        assert_eq!(stats.tables_get_schema_fill, 1);
        assert_eq!(stats.tables_get, 0);
        assert_eq!(stats.retries, 1);
        assert_eq!(stats.total(), 3);
    }
}
