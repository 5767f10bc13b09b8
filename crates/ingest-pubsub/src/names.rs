//! Topic and subscription names: short ids in the client's project, or fully qualified.

/// The two kinds of resources bq-ingest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    Topic,
    Subscription,
}

impl ResourceKind {
    fn collection(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topics",
            ResourceKind::Subscription => "subscriptions",
        }
    }
}

/// `projects/PROJECT/COLLECTION/ID` for a short id; a name that is already of the form
/// `projects/P/COLLECTION/ID` is kept as it is.
pub(crate) fn qualified(project: &str, kind: ResourceKind, name: &str) -> String {
    let collection = kind.collection();
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", p, c, id] if !p.is_empty() && *c == collection && !id.is_empty() => {
            name.to_string()
        }
        _ => format!("projects/{project}/{collection}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_qualified_and_qualified_names_kept() {
        let topic = |n| qualified("p", ResourceKind::Topic, n);
        assert_eq!(topic("t"), "projects/p/topics/t");
        assert_eq!(topic("projects/q/topics/t"), "projects/q/topics/t");
        let subscription = |n| qualified("p", ResourceKind::Subscription, n);
        assert_eq!(subscription("s"), "projects/p/subscriptions/s");
        assert_eq!(
            subscription("projects/q/subscriptions/s"),
            "projects/q/subscriptions/s"
        );
        // A topic name is not a subscription name: it is taken as an id (and Pub/Sub will
        // refuse it, naming it).
        assert_eq!(
            subscription("projects/q/topics/t"),
            "projects/p/subscriptions/projects/q/topics/t"
        );
    }
}
