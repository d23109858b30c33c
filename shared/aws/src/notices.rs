//! Notices for other systems: one event on EventBridge and the same on an SNS topic, so
//! consumers subscribe whichever way suits them.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use maestro_domain::port::PortError;
use serde::Serialize;

use crate::SdkConfig;
use crate::sdk_error::port_error;

/// The `source` of every event Maestro puts on EventBridge.
pub const EVENT_SOURCE: &str = "maestro";

pub struct Notices {
    events: aws_sdk_eventbridge::Client,
    sns: aws_sdk_sns::Client,
    event_bus: String,
    topic_arn: String,
}

impl Notices {
    pub fn new(config: &SdkConfig, event_bus: String, topic_arn: String) -> Self {
        Notices {
            events: aws_sdk_eventbridge::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            event_bus,
            topic_arn,
        }
    }

    /// Puts `detail` on the bus as `detail_type` and publishes it to the topic with the
    /// attribute `detailType`, which subscribers can filter on.
    pub async fn publish(
        &self,
        detail_type: &str,
        detail: &impl Serialize,
    ) -> Result<(), PortError> {
        let detail = serde_json::to_string(detail).map_err(|e| PortError::Rejected {
            service: "events",
            detail: e.to_string(),
        })?;
        let put = self
            .events
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.event_bus)
                    .source(EVENT_SOURCE)
                    .detail_type(detail_type)
                    .detail(&detail)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| port_error("events", &self.event_bus, e))?;
        if put.failed_entry_count > 0 {
            return Err(PortError::Transient {
                service: "events",
                detail: format!("the {detail_type} event was not accepted"),
            });
        }
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(detail_type)
            .message(&detail)
            .message_attributes(
                "detailType",
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(detail_type)
                    .build()
                    .map_err(|e| PortError::Rejected {
                        service: "sns",
                        detail: e.to_string(),
                    })?,
            )
            .send()
            .await
            .map_err(|e| port_error("sns", &self.topic_arn, e))?;
        Ok(())
    }
}
