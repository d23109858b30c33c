//! What people read: the approver's email, the confirm page a link opens, the page that
//! answers a decision, and the requester's notice. Plain HTML with inline styles (mail
//! clients drop style sheets) and no script: only a real button press may decide.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::link::Decision;
use super::request::ApprovalRequest;
use super::workflow::{ActionRecord, Outcome};

/// An email with its HTML and plain-text parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The facts an approver decides on, as label and value.
fn facts(request: &ApprovalRequest) -> Vec<(&'static str, String)> {
    let mut facts = vec![("Action", request.action.title().to_owned())];
    facts.extend(request.action.parameters());
    facts.extend([
        ("Environment", request.environment.to_string()),
        ("Requested by", request.requester.clone()),
        ("Reason", request.reason.clone()),
        (
            "Approvals needed",
            format!("{} of {}", request.approval.quorum, request.votes.len()),
        ),
        ("Expires", when(request.expires_at)),
    ]);
    facts
}

fn facts_table(facts: &[(&str, String)]) -> String {
    let mut rows = String::new();
    for (label, value) in facts {
        let _ = write!(
            rows,
            "<tr><th style=\"text-align:left;padding:4px 12px 4px 0;color:#555;vertical-align:top\">{}</th>\
             <td style=\"padding:4px 0;word-break:break-word\">{}</td></tr>",
            escape(label),
            escape(value)
        );
    }
    format!("<table style=\"border-collapse:collapse;margin:16px 0\">{rows}</table>")
}

fn facts_text(facts: &[(&str, String)]) -> String {
    facts
        .iter()
        .map(|(label, value)| format!("{label}: {value}\n"))
        .collect()
}

fn button(href: &str, label: &str, colour: &str) -> String {
    format!(
        "<a href=\"{}\" style=\"display:inline-block;padding:12px 28px;margin-right:12px;\
         background:{colour};color:#ffffff;text-decoration:none;border-radius:4px;\
         font-weight:bold\">{}</a>",
        escape(href),
        escape(label)
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{}</title></head>\
         <body style=\"font-family:Arial,Helvetica,sans-serif;max-width:640px;margin:32px auto;\
         padding:0 16px;color:#222\"><h1 style=\"font-size:22px\">{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    )
}

/// The email that asks `approver` to decide, with one link per decision.
pub fn approval_email(
    request: &ApprovalRequest,
    approver: &str,
    approve_url: &str,
    reject_url: &str,
) -> Email {
    let subject = format!(
        "Approval needed: {} ({})",
        request.action.title(),
        request.environment
    );
    let facts = facts(request);
    let html = page(
        &subject,
        &format!(
            "<p>{} asks for your approval.</p>{}\
             <p style=\"margin:24px 0\">{}{}</p>\
             <p style=\"color:#555;font-size:13px\">Each button opens a page where you confirm \
             your decision; opening it decides nothing.</p>",
            escape(&request.requester),
            facts_table(&facts),
            button(approve_url, "Approve", "#1a7f37"),
            button(reject_url, "Reject", "#cf222e"),
        ),
    );
    let text = format!(
        "{} asks for your approval.\n\n{}\nApprove: {approve_url}\nReject: {reject_url}\n\n\
         Each link opens a page where you confirm your decision; opening it decides nothing.\n",
        request.requester,
        facts_text(&facts),
    );
    Email {
        to: approver.to_owned(),
        subject,
        html,
        text,
    }
}

/// The hidden fields a confirm form posts back: the link's own, and the form's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmForm {
    pub decision: Decision,
    pub approver: String,
    pub expires: i64,
    pub signature: String,
    pub form_token: String,
}

/// The page a decision link opens: what will happen, a comment box, and one button that
/// posts the decision. Opening it changes nothing.
pub fn confirm_page(request: &ApprovalRequest, form: &ConfirmForm) -> String {
    let (verb, colour, consequence) = match form.decision {
        Decision::Approve => (
            "Approve",
            "#1a7f37",
            format!(
                "Your approval counts towards the {} needed; once they are given, the action runs.",
                request.approval.quorum
            ),
        ),
        Decision::Reject => (
            "Reject",
            "#cf222e",
            "Your rejection ends the request at once: the action will not run.".to_owned(),
        ),
    };
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let mut fields = String::new();
    fields.push_str(&hidden("decision", form.decision.as_str()));
    fields.push_str(&hidden("approver", &form.approver));
    fields.push_str(&hidden("exp", &form.expires.to_string()));
    fields.push_str(&hidden("sig", &form.signature));
    fields.push_str(&hidden("csrf", &form.form_token));
    page(
        &format!("{verb}: {}?", request.action.title()),
        &format!(
            "<p>You are deciding as <strong>{}</strong>.</p>{}<p>{}</p>\
             <form method=\"post\" action=\"{}\">{fields}\
             <label for=\"comment\" style=\"display:block;margin:16px 0 4px\">Comment (optional)</label>\
             <textarea id=\"comment\" name=\"comment\" rows=\"3\" maxlength=\"1000\" \
             style=\"width:100%;box-sizing:border-box\"></textarea>\
             <button type=\"submit\" id=\"decide\" style=\"margin-top:16px;padding:12px 28px;\
             background:{colour};color:#ffffff;border:0;border-radius:4px;font-weight:bold;\
             font-size:16px;cursor:pointer\">{verb}</button></form>",
            escape(&form.approver),
            facts_table(&facts(request)),
            escape(&consequence),
            escape(&form_action(&request.id)),
        ),
    )
}

/// The form posts to the page's own path: a relative reference to the approval's id, so the
/// page works behind any base path or custom domain.
fn form_action(approval_id: &str) -> String {
    form_urlencoded::byte_serialize(approval_id.as_bytes()).collect()
}

/// A page that answers: what happened, or why nothing did.
pub fn message_page(title: &str, message: &str) -> String {
    page(title, &format!("<p>{}</p>", escape(message)))
}

/// The notice the requester gets when the workflow ends.
pub fn outcome_email(record: &ActionRecord, outcome: &Outcome) -> Email {
    let title = record.request.action.title();
    let (headline, detail) = match outcome {
        Outcome::Succeeded { .. } => ("done", "The action ran.".to_owned()),
        Outcome::Failed { error, cause } => (
            "failed",
            format!("The action did not complete: {error}: {cause}"),
        ),
        Outcome::Rejected => (
            "rejected",
            "An approver rejected it; the action did not run.".to_owned(),
        ),
        Outcome::TimedOut => (
            "expired",
            "No decision came before the request expired; the action did not run.".to_owned(),
        ),
    };
    let subject = format!("{title} ({}): {headline}", record.request.environment);
    let mut facts = vec![("Action", title.to_owned())];
    facts.extend(record.request.action.parameters());
    facts.extend([
        ("Environment", record.request.environment.to_string()),
        ("Reason", record.request.reason.clone()),
        ("Request id", record.request.id.clone()),
    ]);
    Email {
        to: record.request.requester.clone(),
        html: page(
            &subject,
            &format!("<p>{}</p>{}", escape(&detail), facts_table(&facts)),
        ),
        text: format!("{detail}\n\n{}", facts_text(&facts)),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::approvals::action::Action;
    use crate::approvals::policy::Approval;
    use crate::approvals::workflow::{ActionRequest, open_request};
    use crate::sso::model::Environment;

    fn request() -> ApprovalRequest {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        open_request(
            &ActionRequest {
                id: "act-42".into(),
                action: Action::SecretRotateNow {
                    secret_id: "prod/<payments>".into(),
                },
                environment: Environment::Production,
                requester: "dave@example.com".into(),
                reason: "leaked \"by accident\"".into(),
            },
            &Approval {
                approvers: vec!["alice@example.com".into(), "bob@example.com".into()],
                quorum: 1,
                timeout_minutes: 60,
                requester_may_approve: false,
            },
            now - Duration::minutes(5),
        )
        .unwrap()
    }

    #[test]
    fn the_email_shows_the_facts_and_both_links_in_both_parts() {
        let email = approval_email(
            &request(),
            "alice@example.com",
            "https://l.example.com/approvals/act-42?decision=approve&sig=a",
            "https://l.example.com/approvals/act-42?decision=reject&sig=r",
        );
        assert_eq!(email.to, "alice@example.com");
        assert!(email.subject.contains("Rotate a secret now"));
        for part in [&email.html, &email.text] {
            assert!(part.contains("dave@example.com"));
            assert!(part.contains("PRODUCTION"));
            assert!(part.contains("2026-11-22 12:55 UTC"), "the expiry is shown");
        }
        assert!(email.html.contains("decision=approve&amp;sig=a"));
        assert!(email.text.contains("decision=reject&sig=r"));
        assert!(
            email.html.contains("prod/&lt;payments&gt;"),
            "values are escaped"
        );
        assert!(!email.html.contains("<script"));
    }

    #[test]
    fn the_confirm_page_posts_one_decision_with_its_token_and_no_script() {
        let form = ConfirmForm {
            decision: Decision::Reject,
            approver: "bob@example.com".into(),
            expires: 1_795_000_000,
            signature: "c2ln".into(),
            form_token: "dG9r".into(),
        };
        let html = confirm_page(&request(), &form);
        assert_eq!(html.matches("<form").count(), 1);
        assert_eq!(html.matches("<button").count(), 1);
        assert!(html.contains("method=\"post\" action=\"act-42\""));
        assert!(html.contains("name=\"csrf\" value=\"dG9r\""));
        assert!(html.contains("leaked &quot;by accident&quot;"));
        assert!(html.contains(">Reject</button>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn the_requester_hears_how_it_ended() {
        let record = ActionRecord {
            request: ActionRequest {
                id: "act-42".into(),
                action: Action::SecretRotateNow {
                    secret_id: "prod/db".into(),
                },
                environment: Environment::Production,
                requester: "dave@example.com".into(),
                reason: "leak".into(),
            },
            status: crate::approvals::workflow::ActionStatus::TimedOut,
            approval_required: true,
            updated_at: Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
            outcome: Some(Outcome::TimedOut),
        };
        let email = outcome_email(&record, &Outcome::TimedOut);
        assert_eq!(email.to, "dave@example.com");
        assert!(email.subject.ends_with("expired"));
        assert!(email.text.contains("act-42"));
    }
}
