//! Every HTTP request the client layer sends, counted by service, operation and status class:
//! the one request counter of the three Google adapters (their `stats()` are views of it) and
//! what the service exports as metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The class of an answer, few enough to be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No HTTP answer: timeout, refused or cut connection, no token.
    Transport,
    /// Anything else (1xx, 3xx).
    Other,
}

impl StatusClass {
    /// The class of an HTTP status.
    pub fn of(status: u16) -> StatusClass {
        match status {
            200..=299 => StatusClass::Success,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    /// `2xx`, `4xx`, `5xx`, `transport`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Transport => "transport",
            StatusClass::Other => "other",
        }
    }
}

/// One counted request kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    /// `storage`, `bigquery` or `pubsub`.
    pub service: &'static str,
    /// The API method, e.g. `objects.list`, `jobs.insert`, `subscriptions.pull`.
    pub operation: &'static str,
    /// How it ended.
    pub status: StatusClass,
}

/// A snapshot of the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests per key (every attempt counts, retries included).
    pub requests: BTreeMap<RequestKey, u64>,
    /// Of those, how many were retries of a failed attempt, per (service, operation).
    pub retries: BTreeMap<(&'static str, &'static str), u64>,
}

impl RequestCounts {
    /// Requests of one operation, whatever their status.
    ///
    /// ```
    /// use ingest_google::{RequestCounters, StatusClass};
    /// let counters = RequestCounters::default();
    /// counters.record("storage", "objects.list", StatusClass::Success, false);
    /// counters.record("storage", "objects.list", StatusClass::ServerError, false);
    /// counters.record("storage", "objects.list", StatusClass::Success, true);
    /// let counts = counters.snapshot();
    /// assert_eq!(counts.calls("objects.list"), 3);
    /// assert_eq!(counts.retries_of("objects.list"), 1);
    /// assert_eq!(counts.total(), 3);
    /// ```
    pub fn calls(&self, operation: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.operation == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Retries of one operation.
    pub fn retries_of(&self, operation: &str) -> u64 {
        self.retries
            .iter()
            .filter(|((_, op), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// All retries.
    pub fn total_retries(&self) -> u64 {
        self.retries.values().sum()
    }

    /// The requests of one service.
    pub fn of_service(&self, service: &str) -> RequestCounts {
        RequestCounts {
            requests: self
                .requests
                .iter()
                .filter(|(k, _)| k.service == service)
                .map(|(k, n)| (*k, *n))
                .collect(),
            retries: self
                .retries
                .iter()
                .filter(|((s, _), _)| *s == service)
                .map(|(k, n)| (*k, *n))
                .collect(),
        }
    }

    /// The requests since `earlier` (a previous snapshot of the same counters).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let minus = |n: u64, e: Option<&u64>| n.saturating_sub(e.copied().unwrap_or(0));
        RequestCounts {
            requests: self
                .requests
                .iter()
                .map(|(k, n)| (*k, minus(*n, earlier.requests.get(k))))
                .filter(|(_, n)| *n > 0)
                .collect(),
            retries: self
                .retries
                .iter()
                .map(|(k, n)| (*k, minus(*n, earlier.retries.get(k))))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// The live counters; clones share them.
#[derive(Debug, Clone, Default)]
pub struct RequestCounters(Arc<Mutex<RequestCounts>>);

impl RequestCounters {
    /// Counts one request.
    pub fn record(
        &self,
        service: &'static str,
        operation: &'static str,
        status: StatusClass,
        retry: bool,
    ) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .requests
            .entry(RequestKey {
                service,
                operation,
                status,
            })
            .or_insert(0) += 1;
        if retry {
            *counts.retries.entry((service, operation)).or_insert(0) += 1;
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
