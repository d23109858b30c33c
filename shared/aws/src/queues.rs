//! SQS: the SSO changes queue and the assignment monitor queue.

use async_trait::async_trait;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use maestro_domain::port::PortError;
use maestro_domain::sso::apply::{ChangeDeferral, MonitorQueue};
use maestro_domain::sso::assignment_monitor::AssignmentRequest;
use maestro_domain::sso::reconcile::{AssignmentChange, ChangeQueue};
use serde::Serialize;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "sqs";

/// A queue that takes JSON messages.
pub struct JsonQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl JsonQueue {
    pub fn new(config: &SdkConfig, url: String) -> Self {
        JsonQueue {
            client: aws_sdk_sqs::Client::new(config),
            url,
        }
    }

    /// Sends every message, ten to a call; entries SQS refuses are tried once more, and any
    /// still refused fail the whole send.
    pub async fn send_all<T: Serialize>(&self, messages: &[T]) -> Result<(), PortError> {
        self.send_all_after(messages, 0).await
    }

    /// [`JsonQueue::send_all`], each message held `delay_seconds` (at most 900) first.
    pub async fn send_all_after<T: Serialize>(
        &self,
        messages: &[T],
        delay_seconds: u32,
    ) -> Result<(), PortError> {
        let delay = i32::try_from(delay_seconds.min(900)).unwrap_or(900);
        let bodies = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Rejected {
                service: SERVICE,
                detail: e.to_string(),
            })?;
        for batch in bodies.chunks(10) {
            let mut pending: Vec<(String, &String)> = batch
                .iter()
                .enumerate()
                .map(|(i, body)| (i.to_string(), body))
                .collect();
            for _attempt in 0..2 {
                if pending.is_empty() {
                    break;
                }
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(*body)
                            .set_delay_seconds((delay > 0).then_some(delay))
                            .build()
                            .map_err(|e| PortError::Rejected {
                                service: SERVICE,
                                detail: e.to_string(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| port_error(SERVICE, &self.url, e))?;
                let failed: Vec<String> = sent.failed.into_iter().map(|f| f.id).collect();
                pending.retain(|(id, _)| failed.contains(id));
            }
            if !pending.is_empty() {
                return Err(PortError::Transient {
                    service: SERVICE,
                    detail: format!("{} messages were refused twice", pending.len()),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ChangeQueue for JsonQueue {
    async fn enqueue(&self, changes: &[AssignmentChange]) -> Result<(), PortError> {
        self.send_all(changes).await
    }

    /// The visible, in-flight and delayed messages, as SQS approximates them.
    async fn backlog(&self) -> Result<usize, PortError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| port_error(SERVICE, &self.url, e))?
            .attributes
            .unwrap_or_default();
        Ok(attributes
            .values()
            .filter_map(|count| count.parse::<usize>().ok())
            .sum())
    }
}

#[async_trait]
impl ChangeDeferral for JsonQueue {
    async fn defer(&self, change: &AssignmentChange, delay_seconds: u32) -> Result<(), PortError> {
        self.send_all_after(std::slice::from_ref(change), delay_seconds)
            .await
    }
}

#[async_trait]
impl MonitorQueue for JsonQueue {
    async fn monitor(&self, request: &AssignmentRequest) -> Result<(), PortError> {
        self.send_all(std::slice::from_ref(request)).await
    }
}
