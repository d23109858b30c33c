//! Sign-in on the local cloud: a Cognito user pool in the emulator issues the ID tokens that
//! the stack's JWT authorizer accepts, as a real user pool or another OIDC issuer would in
//! AWS. Users and their teams (pool groups) are made on demand.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::LocalCloudError;
use crate::identity_provider::LOCAL_PASSWORD;

/// The emulator's user pool that signs Maestro's users in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPool {
    pub id: String,
    pub client_id: String,
    pub region: String,
}

/// Whether the pool verified a user's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVerified {
    Yes,
    No,
}

impl UserPool {
    /// A pool whose users sign in by email address, with one app client.
    pub async fn create(moto_endpoint: &str, region: &str) -> Result<UserPool, LocalCloudError> {
        let pool = call(
            moto_endpoint,
            region,
            "CreateUserPool",
            json!({ "PoolName": "maestro-users", "UsernameAttributes": ["email"] }),
        )
        .await?;
        let id = text(&pool, "/UserPool/Id")?;
        let client = call(
            moto_endpoint,
            region,
            "CreateUserPoolClient",
            json!({
                "UserPoolId": id,
                "ClientName": "maestro",
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH"],
                // As a Cognito client that reads every standard attribute puts them in the
                // ID token; Maestro reads the address only with `email_verified`.
                "ReadAttributes": ["email", "email_verified"],
            }),
        )
        .await?;
        Ok(UserPool {
            client_id: text(&client, "/UserPoolClient/ClientId")?,
            id,
            region: region.to_owned(),
        })
    }

    /// The issuer URL its tokens carry, as the template's `AuthIssuer` names it.
    pub fn issuer(&self) -> String {
        Self::issuer_of(&self.region, &self.id)
    }

    pub fn issuer_of(region: &str, pool_id: &str) -> String {
        format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}")
    }

    /// The ID token of a user who signs in with their password, as the sign-in page posts it.
    pub async fn password_sign_in(
        &self,
        moto_endpoint: &str,
        email: &str,
        password: &str,
    ) -> Result<String, LocalCloudError> {
        let signed_in = call(
            moto_endpoint,
            &self.region,
            "AdminInitiateAuth",
            json!({
                "UserPoolId": self.id,
                "ClientId": self.client_id,
                "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                "AuthParameters": { "USERNAME": email, "PASSWORD": password },
            }),
        )
        .await?;
        text(&signed_in, "/AuthenticationResult/IdToken")
    }

    /// An ID token for `email`, a member of `teams` (made if they do not exist yet).
    pub async fn id_token(
        &self,
        moto_endpoint: &str,
        email: &str,
        teams: &[&str],
    ) -> Result<String, LocalCloudError> {
        self.id_token_with(moto_endpoint, email, teams, EmailVerified::Yes)
            .await
    }

    /// [`UserPool::id_token`] for a user whose address the pool has or has not verified (an
    /// identity provider that lets users set their own address issues such tokens).
    pub async fn id_token_with(
        &self,
        moto_endpoint: &str,
        email: &str,
        teams: &[&str],
        verified: EmailVerified,
    ) -> Result<String, LocalCloudError> {
        let pool = self.id.as_str();
        let call = |operation: &'static str, body: Value| {
            call(moto_endpoint, &self.region, operation, body)
        };
        let created = call(
            "AdminCreateUser",
            json!({
                "UserPoolId": pool,
                "Username": email,
                // As an address the pool confirmed: Maestro trusts no unverified address.
                "UserAttributes": [
                    { "Name": "email", "Value": email },
                    { "Name": "email_verified", "Value": match verified {
                        EmailVerified::Yes => "true",
                        EmailVerified::No => "false",
                    } },
                ],
                "MessageAction": "SUPPRESS",
            }),
        )
        .await;
        match created {
            Ok(_) => {}
            Err(LocalCloudError::Emulator(e)) if e.contains("UsernameExistsException") => {}
            Err(e) => return Err(e),
        }
        // One documented password for every local user, so that a person (or a browser test)
        // can sign in on the pool's pages as any of them.
        call(
            "AdminSetUserPassword",
            json!({ "UserPoolId": pool, "Username": email, "Password": LOCAL_PASSWORD, "Permanent": true }),
        )
        .await?;
        for team in teams {
            match call(
                "CreateGroup",
                json!({ "UserPoolId": pool, "GroupName": team }),
            )
            .await
            {
                Ok(_) => {}
                Err(LocalCloudError::Emulator(e)) if e.contains("GroupExistsException") => {}
                Err(e) => return Err(e),
            }
            call(
                "AdminAddUserToGroup",
                json!({ "UserPoolId": pool, "Username": email, "GroupName": team }),
            )
            .await?;
        }
        self.password_sign_in(moto_endpoint, email, LOCAL_PASSWORD)
            .await
    }
}

fn text(answer: &Value, pointer: &str) -> Result<String, LocalCloudError> {
    answer
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            LocalCloudError::Emulator(format!("cognito-idp answered no {pointer}: {answer}"))
        })
}

/// One Cognito call in its JSON protocol. The emulator routes by the signature's credential
/// scope and does not check the signature itself, so none is computed.
async fn call(
    moto_endpoint: &str,
    region: &str,
    operation: &str,
    body: Value,
) -> Result<Value, LocalCloudError> {
    let date = chrono::Utc::now().format("%Y%m%d");
    let response = reqwest::Client::new()
        .post(format!("{moto_endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{operation}"),
        )
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=localcloud/{date}/{region}/cognito-idp/aws4_request, SignedHeaders=host, Signature=0"
            ),
        )
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| LocalCloudError::Emulator(format!("cognito-idp {operation}: {e}")))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(LocalCloudError::Emulator(format!(
            "cognito-idp {operation}: {status} {answer}"
        )));
    }
    Ok(answer)
}
