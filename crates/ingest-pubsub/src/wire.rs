//! The JSON shapes of Pub/Sub's REST API that bq-ingest reads and writes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ingest_core::event::PubsubMessage;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// One message pulled from a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The id to acknowledge (or modify the deadline of) this delivery with.
    pub ack_id: String,
    /// The message: attributes, decoded data, message id.
    pub message: PubsubMessage,
    /// How many times Pub/Sub has delivered it, when the subscription has a dead-letter policy
    /// (Pub/Sub counts only then).
    pub delivery_attempt: Option<u32>,
    /// Set when the data was not valid base64 (then `message.data` is empty): the message
    /// cannot be handled and is treated as malformed.
    pub undecodable_data: Option<String>,
}

impl ReceivedMessage {
    /// The message id, or `""` when Pub/Sub gave none.
    pub fn message_id(&self) -> &str {
        self.message.message_id.as_deref().unwrap_or("")
    }
}

/// A message to publish: attributes and raw data (base64-encoded on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingMessage {
    /// The attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The data, as bytes.
    #[serde(serialize_with = "as_base64")]
    pub data: Vec<u8>,
}

impl OutgoingMessage {
    /// The size Pub/Sub counts against its 10 MB request limit, roughly: base64 data and the
    /// attributes.
    pub(crate) fn encoded_len(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        self.data.len().div_ceil(3) * 4 + attributes + 32
    }
}

fn as_base64<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(data))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<WireReceived>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceived {
    ack_id: String,
    #[serde(default)]
    message: WireMessage,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    message_id: String,
}

/// The messages of a `subscriptions.pull` answer.
pub(crate) fn received_messages(body: &[u8]) -> Result<Vec<ReceivedMessage>, String> {
    let response: PullResponse = if body.iter().all(u8::is_ascii_whitespace) {
        PullResponse {
            received_messages: Vec::new(),
        }
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())?
    };
    Ok(response
        .received_messages
        .into_iter()
        .map(|received| {
            let (data, undecodable_data) = match STANDARD.decode(&received.message.data) {
                Ok(data) => (data, None),
                Err(e) => (Vec::new(), Some(format!("data is not base64: {e}"))),
            };
            ReceivedMessage {
                ack_id: received.ack_id,
                message: PubsubMessage {
                    attributes: received.message.attributes,
                    data,
                    message_id: Some(received.message.message_id).filter(|id| !id.is_empty()),
                },
                delivery_attempt: received.delivery_attempt,
                undecodable_data,
            }
        })
        .collect())
}

/// `ackDeadlineSeconds` of a `subscriptions.get` answer.
pub(crate) fn ack_deadline_seconds(body: &[u8]) -> Result<u32, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Subscription {
        #[serde(default)]
        ack_deadline_seconds: u32,
    }
    serde_json::from_slice::<Subscription>(body)
        .map(|s| s.ack_deadline_seconds)
        .map_err(|e| e.to_string())
}

/// `messageIds` of a `topics.publish` answer.
pub(crate) fn message_ids(answer: &Value) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PublishResponse {
        #[serde(default)]
        message_ids: Vec<String>,
    }
    PublishResponse::deserialize(answer)
        .map(|r| r.message_ids)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_messages_keep_ack_id_attributes_data_id_and_attempt() {
        let body = br#"{"receivedMessages": [
            {"ackId": "a1", "deliveryAttempt": 3, "message": {"data": "e30=",
             "attributes": {"bucketId": "b"}, "messageId": "42",
             "publishTime": "2020-10-26T00:00:00Z"}},
            {"ackId": "a2", "message": {"attributes": {"k": "v"}}},
            {"ackId": "a3", "message": {"data": "not base64!", "messageId": "7"}}
        ]}"#;
        let messages = received_messages(body).unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].ack_id, "a1");
        assert_eq!(messages[0].message.data, b"{}");
        assert_eq!(messages[0].message.attributes["bucketId"], "b");
        assert_eq!(messages[0].message_id(), "42");
        assert_eq!(messages[0].delivery_attempt, Some(3));
        assert_eq!(messages[0].undecodable_data, None);
        assert_eq!(messages[1].message.message_id, None);
        assert!(messages[1].message.data.is_empty());
        assert_eq!(messages[1].delivery_attempt, None);
        assert!(messages[2]
            .undecodable_data
            .as_deref()
            .unwrap()
            .contains("base64"));
        assert!(messages[2].message.data.is_empty());
    }

    #[test]
    fn an_empty_pull_is_no_messages() {
        assert!(received_messages(b"{}").unwrap().is_empty());
        assert!(received_messages(b"").unwrap().is_empty());
        assert!(received_messages(b"[").is_err());
    }

    #[test]
    fn outgoing_messages_are_base64_with_attributes() {
        let message = OutgoingMessage {
            attributes: BTreeMap::from([("eventType".to_string(), "OBJECT_FINALIZE".to_string())]),
            data: b"{}".to_vec(),
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": "e30="})
        );
        let bare = OutgoingMessage {
            attributes: BTreeMap::new(),
            data: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"data": ""})
        );
        assert!(message.encoded_len() >= 4 + "eventType".len() + "OBJECT_FINALIZE".len());
    }

    #[test]
    fn publish_and_subscription_answers_are_read() {
        let ids = message_ids(&serde_json::json!({"messageIds": ["1", "2"]})).unwrap();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(
            ack_deadline_seconds(br#"{"ackDeadlineSeconds": 60}"#).unwrap(),
            60
        );
        assert_eq!(ack_deadline_seconds(b"{}").unwrap(), 0);
    }
}
