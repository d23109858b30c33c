//! Acting as an approver: the emails SES received (as the launcher keeps them), their links,
//! and the confirm pages, driven as an approver's browser would.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use maestro_localcloud::LocalCloud;
use maestro_localcloud::identity_provider::LOCAL_PASSWORD;
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

/// An approver's browser: it keeps the cookies the links API and the sign-in pages set, and
/// follows their redirects. Signed in as someone, it signs in on the local user pool's page
/// (every local user's password is [`LOCAL_PASSWORD`]) when a link sends it there.
pub struct Browser {
    client: reqwest::Client,
    person: Option<String>,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    /// A browser nobody signs in with: a mail scanner, or whoever was forwarded the email.
    pub fn anonymous() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            person: None,
            cookies: Mutex::default(),
        }
    }

    /// The browser of `email`, who signs in when asked to (made a user of the pool here).
    pub async fn of(cloud: &LocalCloud, email: &str) -> Self {
        cloud
            .bearer(email, &[])
            .await
            .expect("the person is a user of the local pool");
        Browser {
            person: Some(email.to_owned()),
            ..Browser::anonymous()
        }
    }

    fn cookie_header(&self) -> String {
        let cookies = self.cookies.lock().expect("the jar");
        cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&self, response: &reqwest::Response) {
        let mut cookies = self.cookies.lock().expect("the jar");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap_or_default();
            let pair = set.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if set.contains("Max-Age=0") || value.is_empty() {
                cookies.remove(name.trim());
            } else {
                cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// One request with the jar's cookies, then the redirects it leads to (303 and 302 as
    /// GETs, as browsers do); the last response's status, address and page.
    async fn send(&self, mut request: reqwest::RequestBuilder) -> (u16, String, String) {
        for _ in 0..10 {
            let response = request
                .header("cookie", self.cookie_header())
                .header("user-agent", "Mozilla/5.0 (e2e approver)")
                .send()
                .await
                .expect("the local cloud answers");
            self.keep_cookies(&response);
            let url = response.url().to_string();
            let status = response.status().as_u16();
            match response.headers().get("location") {
                Some(location) if (300..400).contains(&status) => {
                    let next = response
                        .url()
                        .join(location.to_str().expect("a location"))
                        .expect("a location URL");
                    request = self.client.get(next);
                }
                _ => return (status, url, response.text().await.expect("a page")),
            }
        }
        panic!("more than ten redirects");
    }

    /// Opens a link as this browser's person: signs in on the pool's page if sent there.
    pub async fn open(&self, url: &str, seen: &mut Seen) -> (u16, String) {
        let (mut status, at, mut page) = self.send(self.client.get(url)).await;
        if let Some(person) = &self.person
            && at.contains("/oauth2/authorize")
        {
            let mut fields = form_fields(&page, "");
            fields.retain(|(name, _)| name != "comment" && name != "username");
            fields.push(("username".to_owned(), person.clone()));
            fields.push(("password".to_owned(), LOCAL_PASSWORD.to_owned()));
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish();
            (status, _, page) = self
                .send(
                    self.client
                        .post(&at)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body),
                )
                .await;
        }
        seen.keep(page.clone());
        (status, page)
    }

    /// Posts the confirm page's form to where its `action` points (the page's own path).
    pub async fn post_form(
        &self,
        link: &str,
        fields: &[(String, String)],
        seen: &mut Seen,
    ) -> (u16, String) {
        self.post_form_from("same-origin", link, fields, seen).await
    }

    /// [`Browser::post_form`] from a page of another origin: `site` is what the browser says
    /// in `Sec-Fetch-Site` (`same-site`, `cross-site`).
    pub async fn post_form_from(
        &self,
        site: &str,
        link: &str,
        fields: &[(String, String)],
        seen: &mut Seen,
    ) -> (u16, String) {
        let target = link.split('?').next().expect("a link has a path");
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let (status, _, page) = self
            .send(
                self.client
                    .post(target)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("sec-fetch-site", site)
                    .body(body),
            )
            .await;
        seen.keep(page.clone());
        (status, page)
    }
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

/// Opens `approver`'s link for `decision` in the one email whose subject holds `subject`,
/// signs them in, and posts its confirm form with `comment`; the answer page.
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
    let browser = Browser::of(cloud, approver).await;
    let (status, page) = browser.open(&url, &mut seen).await;
    assert_eq!(status, 200, "the confirm page opens: {page}");
    browser
        .post_form(&url, &form_fields(&page, comment), &mut seen)
        .await
}
