//! Email through SES (v2 API): one message per recipient, with its HTML and text parts.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use maestro_domain::approvals::render::Email;
use maestro_domain::approvals::steps::Mailer;
use maestro_domain::port::PortError;

use crate::SdkConfig;
use crate::sdk_error::port_error;

const SERVICE: &str = "ses";

pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    sender: String,
}

fn content(text: &str) -> Result<Content, PortError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| PortError::Rejected {
            service: SERVICE,
            detail: e.to_string(),
        })
}

impl SesMailer {
    /// `sender`: a verified SES identity (an address, or an address at a verified domain).
    pub fn new(config: &SdkConfig, sender: String) -> Self {
        SesMailer {
            client: aws_sdk_sesv2::Client::new(config),
            sender,
        }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<(), PortError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .from_email_address(&self.sender)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| port_error(SERVICE, "the email", e))?;
        Ok(())
    }
}
