//! SDK errors as the crawl's [`ProviderError`]: by what retrying can do about them.
//!
//! `maestro_aws::sdk_error` classifies into the ports' `PortError`, which has no place for
//! "denied": a crawl must tell an account that refuses (a role, an SCP, a region not opted
//! in) from one that is only throttled, so discovery keeps its own rule.

use std::error::Error;

use aws_sdk_ec2::error::{ConnectorError, ErrorMetadata, ProvideErrorMetadata, SdkError};
use maestro_domain::inventory::crawl::ProviderError;

/// The same call may succeed later.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
];

/// The account, the role or the region refuses the call.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "OptInRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
];

/// The service error code, when the service answered one.
pub(crate) fn code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(_) => error.code(),
        _ => None,
    }
}

/// Whether the service answered that the named resource does not exist (or cannot, being
/// malformed): an event can name a resource that is already gone.
pub(crate) fn is_absent<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    code(error).is_some_and(|c| {
        c.contains("NotFound")
            || c.contains("Malformed")
            || c.starts_with("NoSuch")
            || c == "InvalidAMIID.Unavailable"
    })
}

/// The answer of a call about one resource that a listing named moments before: none when
/// the resource went in between (the service answers NotFound), which fails nothing. The
/// resource is then left out of the page, as a listing made a moment later would leave it.
pub(crate) fn unless_gone<T, E, R>(
    call: &'static str,
    answer: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, ProviderError>
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match answer {
        Ok(out) => Ok(Some(out)),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(provider_error(call, error)),
    }
}

pub(crate) fn provider_error<E, R>(call: &'static str, error: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &error {
        SdkError::ServiceError(context) => {
            let inner = context.err();
            let code = inner.code().unwrap_or("Unknown");
            let detail = format!(
                "{call}: {code}: {}",
                inner.message().unwrap_or("no message")
            );
            if THROTTLED.contains(&code) {
                ProviderError::Throttled(detail)
            } else if DENIED.contains(&code) {
                ProviderError::Denied(detail)
            } else {
                ProviderError::Failed(detail)
            }
        }
        SdkError::DispatchFailure(failure)
            if is_credentials_failure(failure.as_connector_error(), &error) =>
        {
            ProviderError::Denied(format!("{call}: no credentials: {}", context(&error)))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::Throttled(format!("{call}: {}", context(&error)))
        }
        _ => ProviderError::Failed(format!("{call}: {}", context(&error))),
    }
}

/// The SDK reports credentials it could not get (an assumed role's refresh refused, say) as a
/// dispatch failure of kind "other", the same kind as nothing else the HTTPS client raises for
/// a passing outage (those are "io" or "timeout"). The credential provider's errors all say
/// "credential".
fn is_credentials_failure<E, R>(connector: Option<&ConnectorError>, error: &SdkError<E, R>) -> bool
where
    E: Error + 'static,
    R: std::fmt::Debug + 'static,
{
    connector.is_some_and(|c| c.is_other())
        && chain(error).any(|e| e.to_string().contains("credential"))
}

fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e| {
        let e: &'a (dyn Error + 'static) = *e;
        e.source()
    })
}

/// A role that cannot be assumed is denied, unless STS throttled or could not be reached.
pub(crate) fn assume_role_error(role_arn: &str, error: &(dyn Error + 'static)) -> ProviderError {
    let answered = chain(error).find_map(|e| e.downcast_ref::<ErrorMetadata>());
    if let Some(meta) = answered {
        let code = meta.code().unwrap_or("Unknown");
        let detail = format!(
            "sts:AssumeRole {role_arn}: {code}: {}",
            meta.message().unwrap_or("no message")
        );
        return if THROTTLED.contains(&code) {
            ProviderError::Throttled(detail)
        } else {
            ProviderError::Denied(detail)
        };
    }
    let detail = format!("sts:AssumeRole {role_arn}: {}", context(error));
    let unreachable = chain(error).any(|e| {
        e.downcast_ref::<ConnectorError>()
            .is_some_and(|c| c.is_io() || c.is_timeout())
            || e.to_string().contains("timed out")
    });
    if unreachable {
        ProviderError::Throttled(detail)
    } else {
        ProviderError::Denied(detail)
    }
}

/// Each cause's message, outermost first; unlike `DisplayErrorContext`, without the debug
/// dump of the raw response.
fn context(error: &(dyn Error + 'static)) -> String {
    chain(error)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    type Response = aws_sdk_ec2::config::http::HttpResponse;

    fn service_error(code: &str) -> SdkError<DescribeInstancesError, Response> {
        let meta = ErrorMetadata::builder().code(code).message("no").build();
        let response = Response::new(400.try_into().expect("a status"), SdkBody::empty());
        SdkError::service_error(DescribeInstancesError::generic(meta), response)
    }

    #[test]
    fn codes_sort_into_what_a_retry_can_do() {
        let classify = |c| provider_error("ec2:DescribeInstances", service_error(c));
        assert!(matches!(
            classify("RequestLimitExceeded"),
            ProviderError::Throttled(_)
        ));
        assert!(matches!(
            classify("UnauthorizedOperation"),
            ProviderError::Denied(_)
        ));
        assert!(matches!(
            classify("OptInRequired"),
            ProviderError::Denied(_)
        ));
        let failed = classify("InvalidParameterValue");
        assert_eq!(
            failed,
            ProviderError::Failed("ec2:DescribeInstances: InvalidParameterValue: no".into())
        );
    }

    #[test]
    fn a_resource_already_gone_is_absent_not_an_error() {
        assert!(is_absent(&service_error("InvalidInstanceID.NotFound")));
        assert!(is_absent(&service_error("DBInstanceNotFound")));
        assert!(is_absent(&service_error("NoSuchBucket")));
        assert!(!is_absent(&service_error("AccessDenied")));
    }

    #[test]
    fn a_role_refused_is_denied_and_an_unreachable_sts_is_not() {
        let refused = ErrorMetadata::builder()
            .code("AccessDenied")
            .message("not authorized to perform sts:AssumeRole")
            .build();
        let role = "arn:aws:iam::222222222222:role/discovery";
        assert_eq!(
            assume_role_error(role, &refused),
            ProviderError::Denied(format!(
                "sts:AssumeRole {role}: AccessDenied: not authorized to perform sts:AssumeRole"
            ))
        );
        let throttled = ErrorMetadata::builder().code("Throttling").build();
        assert!(matches!(
            assume_role_error(role, &throttled),
            ProviderError::Throttled(_)
        ));
        let unreachable = ConnectorError::io("connection refused".into());
        assert!(matches!(
            assume_role_error(role, &unreachable),
            ProviderError::Throttled(_)
        ));
    }
}
