//! Acting as an approver: the emails SES received (as the launcher keeps them), their links,
//! and the confirm pages, driven as an approver's browser would.

use std::time::{Duration, Instant};

use maestro_localcloud::LocalCloud;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(20);

/// What the tests saw on the wire, to check no task token ever shows.
#[derive(Default)]
pub struct Seen(pub Vec<String>);

impl Seen {
    pub fn keep(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }
}

/// Every email SES accepted so far, as the launcher kept it.
pub async fn sent_email(cloud: &LocalCloud) -> Vec<Value> {
    let answer: Value = reqwest::get(format!(
        "{}/moto-api/maestro/sent-email",
        cloud.moto_endpoint()
    ))
    .await
    .expect("the emulator answers")
    .json()
    .await
    .expect("JSON");
    answer["messages"].as_array().cloned().unwrap_or_default()
}

/// Waits until `count` emails whose subject contains `subject` went out, and returns them.
pub async fn emails(cloud: &LocalCloud, subject: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found: Vec<Value> = sent_email(cloud)
            .await
            .into_iter()
            .filter(|m| m["subject"].as_str().unwrap_or_default().contains(subject))
            .collect();
        if found.len() >= count || Instant::now() > deadline {
            assert_eq!(found.len(), count, "emails about {subject:?}: {found:#?}");
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn to(email: &Value) -> String {
    email["to"][0].as_str().unwrap_or_default().to_owned()
}

/// The link of an email's plain-text part after `label` ("Approve" or "Reject").
pub fn link(email: &Value, label: &str) -> String {
    let prefix = format!("{label}: ");
    email["text"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the email has a {label} link: {email:#}"))
        .to_owned()
}

pub fn email_to<'a>(emails: &'a [Value], address: &str) -> &'a Value {
    emails
        .iter()
        .find(|e| to(e) == address)
        .unwrap_or_else(|| panic!("an email to {address}"))
}

pub async fn open(url: &str, seen: &mut Seen) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the links API answers");
    let status = response.status().as_u16();
    let page = response.text().await.expect("a page");
    seen.keep(page.clone());
    (status, page)
}

/// The confirm page's form fields (the hidden ones and the comment), as a browser posts them.
pub fn form_fields(page: &str, comment: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in page.split("<input ").skip(1) {
        let attribute = |name: &str| {
            let start = input.find(&format!("{name}=\""))? + name.len() + 2;
            let end = input[start..].find('"')? + start;
            Some(
                input[start..end]
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        };
        if let (Some(name), Some(value)) = (attribute("name"), attribute("value")) {
            fields.push((name, value));
        }
    }
    fields.push(("comment".to_owned(), comment.to_owned()));
    fields
}

/// Posts the confirm page's form to where its `action` points (the page's own path).
pub async fn post_form(link: &str, fields: &[(String, String)], seen: &mut Seen) -> (u16, String) {
    let target = link.split('?').next().expect("a link has a path");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = reqwest::Client::new()
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "Mozilla/5.0 (e2e approver)")
        .body(body)
        .send()
        .await
        .expect("the links API answers");
    let status = response.status().as_u16();
    let page = response.text().await.expect("a page");
    seen.keep(page.clone());
    (status, page)
}

/// Opens `approver`'s link for `decision` in the one email whose subject holds `subject`,
/// and posts its confirm form with `comment`; the answer page.
pub async fn decide_by_email(
    cloud: &LocalCloud,
    subject: &str,
    approver: &str,
    decision: &str,
    comment: &str,
) -> (u16, String) {
    let sent = sent_email(cloud).await;
    let deadline = Instant::now() + PATIENCE;
    let mut sent = sent;
    let email = loop {
        if let Some(email) = sent.iter().find(|m| {
            to(m) == approver && m["subject"].as_str().unwrap_or_default().contains(subject)
        }) {
            break email.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no email about {subject:?} reached {approver}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        sent = sent_email(cloud).await;
    };
    let label = if decision == "approve" {
        "Approve"
    } else {
        "Reject"
    };
    let url = link(&email, label);
    let mut seen = Seen::default();
    let (status, page) = open(&url, &mut seen).await;
    assert_eq!(status, 200, "the confirm page opens: {page}");
    post_form(&url, &form_fields(&page, comment), &mut seen).await
}
