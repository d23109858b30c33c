"""Maestro's moto launcher: the AWS APIs of the local cloud.

Runs moto's server in-process (``ThreadedMotoServer``) on a free loopback port, with the few
extensions Maestro needs where moto 5.2.5 falls short. Each extension is listed here and in
localcloud/README.md; keep the two in step.

1. Lambda from Step Functions. moto's ASL interpreter would call moto's own Lambda, which runs
   functions in Docker. Every boto client the interpreter builds for ``lambda`` points at the
   local host's Invoke API instead (``--lambda-endpoint``), so state machines call Maestro's
   real functions in-process. Other services stay on this server, addressed as 127.0.0.1 (moto
   would say ``localhost``, which may resolve to ::1 first).
2. Step Functions execution is on (moto's ``execute_state_machine``), so the ASL really runs.
3. sso-admin tags. moto lacks ``TagResource``, ``UntagResource`` and ``ListTagsForResource``;
   the SSO model lives in permission-set tags, so they are added (on permission sets and
   instances).
4. sso-admin permission sets as IAM Identity Center shapes them: ARNs are
   ``arn:aws:sso:::permissionSet/ssoins-…/ps-…`` (moto says ``instance/…``) and
   ``SessionDuration`` is an ISO 8601 duration (moto may answer a number or null, which the
   AWS SDKs refuse to read).
5. sso-admin provisioning is asynchronous. moto answers SUCCEEDED at once; IAM Identity Center
   answers IN_PROGRESS and settles later, and fails requests for accounts outside the
   organisation. Here a request reports IN_PROGRESS for its first ``--sso-polls-in-progress``
   status reads, and a CreateAccountAssignment for an account that is not an ACTIVE member of
   the organisation (when one exists) ends FAILED with IAM Identity Center's reason.
6. DynamoDB conditional writes are atomic, as in DynamoDB: moto's server handles requests on
   several threads and checks a condition and writes in two steps, so two writers could both
   pass the same condition. The writes of its DynamoDB backend are serialised by one lock.
7. A permission set is provisioned to every account it is assigned in, as IAM Identity Center
   does on CreateAccountAssignment, and stays provisioned after its assignments go:
   ``ListAccountsForProvisionedPermissionSet`` answers those accounts and
   ``ListPermissionSetsProvisionedToAccount`` those permission sets (moto answers only the
   caller's account, and only after ProvisionPermissionSet).
8. SES v2 ``SendEmail`` is kept whole and served at ``GET /moto-api/maestro/sent-email``
   (``capture_sent_email``).
9. ``RotateSecret`` runs the rotation function on the local host, as Secrets Manager does
   (``rotate_secrets_through``).
10. Fault injection, for tests of failure handling: ``POST /moto-api/maestro/faults`` makes
    every matching request (service, action, and optionally signing region, account, and only
    requests carrying a pagination token) answer an AWS error in its service's wire format
    instead of reaching moto, until ``DELETE /moto-api/maestro/faults`` or a reset
    (``inject_faults``).
11. Every successful DynamoDB item write (PutItem, UpdateItem, DeleteItem, each item of
    BatchWriteItem and TransactWriteItems) is logged with its table and key, served at
    ``GET /moto-api/maestro/dynamodb-writes`` (``log_dynamodb_writes``), so tests can prove that
    an unchanged resource costs no write.
12. EventBridge deliveries carry the event's ``account``, as EventBridge's always do: moto's
    default target input template leaves it out, and discovery's event refresh finds the
    connection by it.
13. Every AWS call is recorded as who made it and which API operation it was
    (``record_calls``). The local host signs each function's calls with its own access key
    (``LOCAL<logical id>``). When ``MAESTRO_CALL_LOG`` names a file, each distinct
    (access key, signing name, operation) is appended to it as a JSON line, with the role
    behind an assumed role's key, so the IAM test can set what each function did against
    what the template grants it. ``GET /moto-api/maestro/calls`` counts every call by the
    same key (``DELETE`` empties the counts), for the cost measurements.
14. Organizations accounts answer ``State`` and no ``Status``, as AWS has since it retired
    the field on 2026-09-09 (``retire_account_status``): moto still answers both, so a reader
    of the old field would pass here and find every account unknown on AWS.

15. ``DescribeImages`` leaves disabled AMIs out unless ``IncludeDisabled`` is true, as EC2 does
    (``hide_disabled_images``): moto lists them always, so a crawl that forgot the flag would
    pass here and mark every disabled AMI gone on AWS.

16. sso-admin takes at most ``--sso-admin-calls-per-second`` calls a second per region (20, IAM
    Identity Center's quota) and answers ``ThrottlingException`` past it
    (``limit_sso_admin_rate``): moto takes any number, so code that ignored the quota would
    pass here and be throttled on AWS. The harness's own calls are not counted.
17. An execution that ends puts a ``Step Functions Execution Status Change`` event on the
    default bus, as Step Functions does (``announce_execution_status_changes``): moto sends
    none, so a rule that reacts to a failed, timed-out or stopped execution would never fire.
    A stopped execution ends ABORTED, as StopExecution's do (moto may say FAILED).
18. DynamoDB's eventually consistent reads, on demand (``make_dynamodb_reads_eventual``):
    after ``POST /moto-api/maestro/eventual-consistency`` with ``{"staleMs": N}``, every read
    that does not ask for ``ConsistentRead`` (GetItem, each table of BatchGetItem, Query, Scan)
    and every read of a global secondary index answers as the table stood ``N`` ms before:
    an item written since is answered as it was before, one created since is missing, one
    deleted since is still there. moto's reads are always consistent, so code that read its
    own fresh writes without asking for consistency would pass here and miss them on AWS.
19. Opt-in regions an account has not enabled, on demand (``opt_in_regions``): after
    ``POST /moto-api/maestro/regions-not-enabled`` with ``{"account", "regions"}``, every
    request that account signs for one of those regions is refused, whatever the service, with
    ``AuthFailure`` (401), as AWS refuses credentials in a region the account has not enabled;
    and ``ec2:DescribeRegions`` answers those regions' ``OptInStatus`` as ``not-opted-in``.
    moto knows no opt-in regions, so a crawl that took a disabled region for a failing one
    would pass here and alarm on AWS. ``DELETE`` enables them all again.

The launcher prints ``MOTO_READY <port>`` on stdout once the server listens, and exits when its
standard input closes, so a parent that dies never leaves a server behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

NOT_SUPPORTED_ACCOUNT = "Received a 404 status error: Not supported account"

# The credential scope of a SigV4 Authorization header: access key, date, region, service.
SIGV4_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/")


def signed_by(headers: Any) -> tuple[str | None, str | None, str | None]:
    """The access key, signing region and signing name of a request's SigV4 signature."""
    match = SIGV4_CREDENTIAL.search(headers.get("Authorization", "") or "")
    return (match.group(1), match.group(2), match.group(3)) if match else (None, None, None)


def request_body(request: Any) -> bytes:
    """The raw body of a request to one of the launcher's own endpoints."""
    # Read raw: curl -d and urllib label JSON a form (x-www-form-urlencoded), which
    # ``request.data`` would parse as one and answer empty.
    return request.get_data(cache=True, parse_form_data=False)


def before_each_request(hook: Any) -> None:
    """Runs ``hook(response, request)`` before moto answers any request; an answer the hook
    returns is sent instead of moto's.

    Every service answers through ``BaseResponse.call_action``, but for S3, which answers from
    its own entry points (after ``setup_class``). A later hook runs before an earlier one.
    """
    from moto.core.responses import BaseResponse
    from moto.s3.responses import S3Response

    original_call_action = BaseResponse.call_action

    def call_action(self: BaseResponse) -> Any:
        answer = hook(self, self.normalized_request)
        return answer if answer is not None else original_call_action(self)

    def s3_entry(original: Any) -> Any:
        def entry(self: S3Response, request: Any, full_url: str) -> Any:
            answer = hook(self, request)
            return answer if answer is not None else original(self, request, full_url)

        return entry

    for name in ("_bucket_response", "_key_response"):
        if not hasattr(S3Response, name):
            raise SystemExit(f"moto's S3Response has no {name}; update the launcher")
        setattr(S3Response, name, s3_entry(getattr(S3Response, name)))
    BaseResponse.call_action = call_action


# Serialises the writes of moto's DynamoDB backend (``make_dynamodb_writes_atomic``); the write
# log (``log_dynamodb_writes``) records under it too, so its order is the order of the writes.
DYNAMODB_WRITES_LOCK = threading.RLock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--lambda-endpoint",
        required=True,
        help="the local host's Lambda Invoke API, e.g. http://127.0.0.1:9001",
    )
    parser.add_argument(
        "--sso-admin-calls-per-second",
        type=int,
        default=20,
        help="IAM Identity Center's quota for the region; past it, ThrottlingException (0: no limit)",
    )
    parser.add_argument(
        "--sso-polls-in-progress",
        type=int,
        default=1,
        help="status reads that answer IN_PROGRESS before a request settles",
    )
    args = parser.parse_args()
    if urlsplit(args.lambda_endpoint).scheme not in ("http", "https"):
        parser.error(f"--lambda-endpoint must be an http(s) URL, got {args.lambda_endpoint!r}")

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    # One line per request on stderr would drown the local host's own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's own integrations (SNS, SQS and DynamoDB tasks of state machines) read this.
    os.environ["MOTO_PORT"] = str(port)

    enable_state_machine_execution()
    route_lambda_to(args.lambda_endpoint, f"http://{host}:{port}")
    add_sso_admin_tags()
    shape_permission_sets_like_aws()
    make_dynamodb_writes_atomic()
    make_sso_provisioning_asynchronous(args.sso_polls_in_progress)
    capture_sent_email()
    rotate_secrets_through(args.lambda_endpoint)
    inject_faults()
    limit_sso_admin_rate(args.sso_admin_calls_per_second)
    log_dynamodb_writes()
    deliver_events_with_their_account()
    retire_account_status()
    hide_disabled_images()
    announce_execution_status_changes()
    make_dynamodb_reads_eventual()
    opt_in_regions()
    record_calls(os.environ.get("MAESTRO_CALL_LOG") or None)

    print(f"MOTO_READY {port}", flush=True)
    # The parent holds our stdin: when it exits, for whatever reason, so do we.
    sys.stdin.read()
    os._exit(0)


def enable_state_machine_execution() -> None:
    # The same switch as `POST /moto-api/config`, set before the first request, and kept
    # across `POST /moto-api/reset`.
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"]["execute_state_machine"] = True


def route_lambda_to(lambda_endpoint: str, moto_endpoint: str) -> None:
    import boto3
    from botocore.config import Config

    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    def boto_client_for(region: str, service: str, state_credentials: Any = None):
        endpoint = lambda_endpoint if service == "lambda" else moto_endpoint
        return boto3.client(
            service_name=service,
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id="localcloud",
            aws_secret_access_key="localcloud",
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            ),
        )

    # Every interpreter module imported the name itself, so each one's copy is replaced.
    import importlib
    import pkgutil

    import moto.stepfunctions.parser as parser_package

    replaced = 0
    for module_info in pkgutil.walk_packages(parser_package.__path__, parser_package.__name__ + "."):
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:
            continue
        if hasattr(module, "boto_client_for"):
            module.boto_client_for = boto_client_for
            replaced += 1
    if replaced == 0:
        raise SystemExit("moto's interpreter no longer has boto_client_for; update the launcher")


def add_sso_admin_tags() -> None:
    from moto.ssoadmin.exceptions import ResourceNotFoundException
    from moto.ssoadmin.models import SSOAdminBackend
    from moto.ssoadmin.responses import SSOAdminResponse

    def taggable(backend: SSOAdminBackend, arn: str) -> Any:
        for permission_set in backend.permission_sets:
            if permission_set.permission_set_arn == arn:
                return permission_set
        for instance in backend.instances:
            if instance.instance_arn == arn:
                if not hasattr(instance, "tags"):
                    instance.tags = []
                return instance
        raise ResourceNotFoundException

    def tag_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        resource = taggable(self.ssoadmin_backend, params.get("ResourceArn"))
        new = {tag["Key"]: tag["Value"] for tag in params.get("Tags", [])}
        kept = [tag for tag in (resource.tags or []) if tag["Key"] not in new]
        resource.tags = kept + [{"Key": k, "Value": v} for k, v in new.items()]
        return json.dumps({})

    def untag_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        resource = taggable(self.ssoadmin_backend, params.get("ResourceArn"))
        removed = set(params.get("TagKeys", []))
        resource.tags = [tag for tag in (resource.tags or []) if tag["Key"] not in removed]
        return json.dumps({})

    def list_tags_for_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        resource = taggable(self.ssoadmin_backend, params.get("ResourceArn"))
        return json.dumps({"Tags": list(resource.tags or [])})

    SSOAdminResponse.tag_resource = tag_resource
    SSOAdminResponse.untag_resource = untag_resource
    SSOAdminResponse.list_tags_for_resource = list_tags_for_resource


def shape_permission_sets_like_aws() -> None:
    from moto.moto_api._internal import mock_random as random
    from moto.ssoadmin.models import PermissionSet

    def generate_id(instance_arn: str) -> str:
        partition_prefix, instance_id = instance_arn.split(":::instance/", 1)
        suffix = random.get_random_string(length=16).lower()
        return f"{partition_prefix}:::permissionSet/{instance_id}/ps-{suffix}"

    original_to_json = PermissionSet.to_json

    def to_json(self: PermissionSet, include_creation_date: bool = False) -> dict[str, Any]:
        summary = original_to_json(self, include_creation_date)
        duration = summary.get("SessionDuration")
        if not isinstance(duration, str) or not duration.startswith("PT"):
            summary["SessionDuration"] = "PT1H"
        return summary

    PermissionSet.generate_id = staticmethod(generate_id)
    PermissionSet.to_json = to_json


def make_dynamodb_writes_atomic() -> None:
    import functools

    from moto.dynamodb.models import DynamoDBBackend

    lock = DYNAMODB_WRITES_LOCK

    def serialised(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return wrapper

    # Reads too: moto's Table.items is a defaultdict, and a GetItem (or each key of a
    # BatchGetItem) of a missing item on a table with a range key inserts an empty entry. A
    # read in another thread then changes the dict a transaction is deep-copying ("dictionary
    # changed size during iteration"), or a Query is iterating.
    serialised_methods = (
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "batch_write_item",
        "get_item",
        "query",
        "scan",
    )
    for name in serialised_methods:
        if not hasattr(DynamoDBBackend, name):
            raise SystemExit(f"moto's DynamoDB backend has no {name}; update the launcher")
        setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name)))


def make_sso_provisioning_asynchronous(polls_in_progress: int) -> None:
    from moto.moto_api._internal import mock_random as random
    from moto.ssoadmin.exceptions import ResourceNotFoundException
    from moto.ssoadmin.responses import SSOAdminResponse

    # Permission set ARN -> the accounts it is provisioned to.
    provisioned: dict[str, set[str]] = {}
    # Request id -> (status body, failure reason or None, status reads so far). Creations and
    # deletions have ids of their own, and stay readable after the assignment is gone, as in
    # IAM Identity Center (moto reuses the creation's id for the deletion and forgets it).
    creations: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    lock = threading.Lock()

    def member_status(account_id: str, target_id: str) -> str | None:
        """The target's status in the caller's organisation, or None without an organisation."""
        from moto.organizations.models import organizations_backends

        backend = organizations_backends[account_id]["aws"]
        if backend.org is None:
            return None
        for account in backend.accounts:
            if account.id == target_id:
                return account.state
        return "NOT_A_MEMBER"

    def accepted(requests: dict[str, list[Any]], key: str, body: dict[str, Any], reason: str | None) -> str:
        body["RequestId"] = str(random.uuid4())
        with lock:
            requests[body["RequestId"]] = [dict(body), reason, 0]
        body["Status"] = "IN_PROGRESS"
        return json.dumps({key: body})

    def described(requests: dict[str, list[Any]], key: str, request_id: str) -> str:
        with lock:
            entry = requests.get(request_id)
            if entry is None:
                raise ResourceNotFoundException
            body, reason, reads = entry
            entry[2] = reads + 1
        body = dict(body)
        if reads < polls_in_progress:
            body["Status"] = "IN_PROGRESS"
        elif reason is not None:
            body["Status"] = "FAILED"
            body["FailureReason"] = reason
        else:
            body["Status"] = "SUCCEEDED"
        return json.dumps({key: body})

    original_create = SSOAdminResponse.create_account_assignment
    original_delete = SSOAdminResponse.delete_account_assignment

    def create_account_assignment(self: SSOAdminResponse) -> str:
        key = "AccountAssignmentCreationStatus"
        body = json.loads(original_create(self))[key]
        status = member_status(self.current_account, body["TargetId"])
        reason = None if status in (None, "ACTIVE") else NOT_SUPPORTED_ACCOUNT
        if reason is None:
            with lock:
                provisioned.setdefault(body["PermissionSetArn"], set()).add(body["TargetId"])
        return accepted(creations, key, body, reason)

    def delete_account_assignment(self: SSOAdminResponse) -> str:
        key = "AccountAssignmentDeletionStatus"
        body = json.loads(original_delete(self))[key]
        return accepted(deletions, key, body, None)

    def describe_creation(self: SSOAdminResponse) -> str:
        request_id = json.loads(self.body).get("AccountAssignmentCreationRequestId")
        return described(creations, "AccountAssignmentCreationStatus", request_id)

    def describe_deletion(self: SSOAdminResponse) -> str:
        request_id = json.loads(self.body).get("AccountAssignmentDeletionRequestId")
        return described(deletions, "AccountAssignmentDeletionStatus", request_id)

    def list_accounts_for_provisioned_permission_set(self: SSOAdminResponse) -> str:
        permission_set_arn = self._get_param("PermissionSetArn")
        with lock:
            accounts = sorted(provisioned.get(permission_set_arn, set()))
        return json.dumps({"AccountIds": accounts})

    def list_permission_sets_provisioned_to_account(self: SSOAdminResponse) -> str:
        account_id = self._get_param("AccountId")
        with lock:
            sets = sorted(arn for arn, accounts in provisioned.items() if account_id in accounts)
        return json.dumps({"PermissionSets": sets})

    forget_on_reset(creations, deletions, provisioned)
    SSOAdminResponse.list_accounts_for_provisioned_permission_set = (
        list_accounts_for_provisioned_permission_set
    )
    SSOAdminResponse.list_permission_sets_provisioned_to_account = (
        list_permission_sets_provisioned_to_account
    )
    SSOAdminResponse.create_account_assignment = create_account_assignment
    SSOAdminResponse.delete_account_assignment = delete_account_assignment
    SSOAdminResponse.describe_account_assignment_creation_status = describe_creation
    SSOAdminResponse.describe_account_assignment_deletion_status = describe_deletion


def capture_sent_email() -> None:
    """Keeps every SES v2 ``SendEmail`` whole, and serves them at ``GET /moto-api/maestro/sent-email``.

    moto keeps only the HTML part of a simple message (the text part is dropped), and its
    sent messages are reachable only in-process; tests read what a person would receive.
    """
    import json

    from moto.moto_api._internal import urls as moto_api_urls
    from moto.sesv2.responses import SESV2Response

    sent: list[dict[str, Any]] = []
    original_send = SESV2Response.send_email

    def send_email(self: SESV2Response) -> str:
        answer = original_send(self)  # moto's checks first: an unverified sender is refused
        params = json.loads(self.body)
        simple = params.get("Content", {}).get("Simple", {})
        body = simple.get("Body", {})
        destination = params.get("Destination", {})
        sent.append(
            {
                "from": params.get("FromEmailAddress"),
                "to": destination.get("ToAddresses", []),
                "cc": destination.get("CcAddresses", []),
                "bcc": destination.get("BccAddresses", []),
                "subject": simple.get("Subject", {}).get("Data"),
                "html": body.get("Html", {}).get("Data"),
                "text": body.get("Text", {}).get("Data"),
            }
        )
        return answer

    def sent_email(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        return 200, {"Content-Type": "application/json"}, json.dumps({"messages": sent})

    SESV2Response.send_email = send_email
    moto_api_urls.url_paths["{0}/moto-api/maestro/sent-email"] = sent_email
    forget_on_reset(sent)


def rotate_secrets_through(lambda_endpoint: str) -> None:
    """Runs a secret's rotation function on the local host, as Secrets Manager does.

    moto would invoke the rotation function through its own Lambda (Docker). Here each step
    (createSecret, setSecret, testSecret, finishSecret) is an Invoke API call to the local host,
    in order, stopping at the first that fails. As in AWS, RotateSecret then answers success
    whatever the function did (AWS rotates asynchronously): a failed rotation leaves AWSPENDING
    on its version and AWSCURRENT where it was, and puts a RotationFailed event on the default
    bus. After a successful one, AWSPENDING is removed, which AWS allows and moto needs (moto
    refuses the next RotateSecret while AWSPENDING and AWSCURRENT share a version). A
    RotateSecret without RotationLambdaARN uses the secret's own function, as in AWS.
    """
    import json
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    import moto.awslambda.utils as lambda_utils
    from moto.events.models import events_backends
    from moto.secretsmanager.models import SecretsManagerBackend

    class StepFailed(Exception):
        def __init__(self, step: str, reason: str) -> None:
            super().__init__(f"{step}: {reason}")
            self.step = step
            self.reason = reason

    class LocalHostLambda:
        def get_function(self, arn: str) -> None:
            return None

        def invoke(self, arn: str, qualifier: Any, body: str, headers: Any, response_headers: Any) -> None:
            step = json.loads(body).get("Step", "?")
            request = urllib.request.Request(
                f"{lambda_endpoint}/2015-03-31/functions/{quote(arn, safe='')}/invocations",
                data=body.encode(),
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=900) as response:
                    answer = response.read().decode()
                    if response.headers.get("X-Amz-Function-Error"):
                        raise StepFailed(step, answer)
            except urllib.error.HTTPError as error:
                raise StepFailed(step, error.read().decode()) from error

    original_rotate = SecretsManagerBackend.rotate_secret
    original_get_backend = lambda_utils.get_backend

    def rotate_secret(self: SecretsManagerBackend, secret_id: str, **kwargs: Any) -> str:
        # Without RotationLambdaARN, AWS rotates with the function the secret already has;
        # moto would forget it and stage an empty version AWSCURRENT.
        if not kwargs.get("rotation_lambda_arn") and self._is_valid_identifier(secret_id):
            kwargs["rotation_lambda_arn"] = self.secrets[secret_id].rotation_lambda_arn or None
        lambda_utils.get_backend = lambda account_id, region: LocalHostLambda()
        try:
            answer = original_rotate(self, secret_id, **kwargs)
        except StepFailed as failure:
            secret = self.secrets[secret_id]
            events_backends[self.account_id][self.region_name].put_events(
                [
                    {
                        "Source": "aws.secretsmanager",
                        "DetailType": "AWS Service Event via CloudTrail",
                        "EventBusName": "default",
                        "Detail": json.dumps(
                            {
                                "eventSource": "secretsmanager.amazonaws.com",
                                "eventName": "RotationFailed",
                                "awsRegion": self.region_name,
                                "additionalEventData": {"SecretId": secret.arn},
                                "errorMessage": str(failure),
                            }
                        ),
                    }
                ]
            )
            return json.dumps({"ARN": secret.arn, "Name": secret.name})
        finally:
            lambda_utils.get_backend = original_get_backend
        secret = self.secrets[secret_id]
        for version in secret.versions.values():
            stages = version["version_stages"]
            if "AWSPENDING" in stages and "AWSCURRENT" in stages:
                stages.remove("AWSPENDING")
        return answer

    SecretsManagerBackend.rotate_secret = rotate_secret

    # GetSecretValue without a stage reads moto's "default version", which moving AWSCURRENT
    # with UpdateSecretVersionStage (what finishSecret does) leaves behind; in AWS it reads
    # AWSCURRENT, and so it does here.
    original_update_stage = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(self: SecretsManagerBackend, secret_id: str, version_stage: str, remove_from_version_id: str, move_to_version_id: str) -> tuple[str, str]:
        answer = original_update_stage(
            self, secret_id, version_stage, remove_from_version_id, move_to_version_id
        )
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return answer

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage

    original_get_value = SecretsManagerBackend.get_secret_value

    def get_secret_value(self: SecretsManagerBackend, secret_id: str, version_id: str, version_stage: str) -> dict[str, Any]:
        if not version_id and not version_stage:
            version_stage = "AWSCURRENT"
        return original_get_value(self, secret_id, version_id, version_stage)

    SecretsManagerBackend.get_secret_value = get_secret_value


# Request parameters that carry a pagination token, in the query string, a form body or a JSON
# body, whatever the service's protocol.
PAGINATION_TOKENS = (
    "NextToken",
    "nextToken",
    "Marker",
    "marker",
    "continuation-token",
    "ContinuationToken",
    "key-marker",
    "PaginationToken",
    "ExclusiveStartKey",
    "ExclusiveStartTableName",
)


def aws_error(response: Any, code: str, message: str, status: int) -> tuple[int, dict[str, str], str]:
    """An AWS error in the protocol of ``response``'s service (ec2, query, rest-xml, rest-json,
    json), as the SDKs read AWS's."""
    import uuid
    from xml.sax.saxutils import escape

    from moto.core.utils import get_service_model

    request_id = str(uuid.uuid4())
    try:
        service_model = get_service_model(response.boto3_service_name)
        try:
            protocol = response.determine_response_protocol(service_model)
        except NotImplementedError:
            protocol = str(service_model.protocol)
        json_version = service_model.metadata.get("jsonVersion", "1.0")
    except Exception:
        protocol, json_version = "json", "1.0"
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "ec2":
        headers["Content-Type"] = "text/xml"
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    elif protocol == "rest-xml" and response.boto3_service_name == "s3":
        headers["Content-Type"] = "application/xml"
        headers["x-amz-request-id"] = request_id
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        )
    elif protocol in ("query", "rest-xml"):
        headers["Content-Type"] = "text/xml"
        kind = "Sender" if status < 500 else "Receiver"
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error>"
            f"<Type>{kind}</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    elif protocol == "rest-json":
        headers["Content-Type"] = "application/json"
        headers["x-amzn-ErrorType"] = code
        body = json.dumps({"message": message})
    else:  # json (awsJson1_0, awsJson1_1), and anything newer
        headers["Content-Type"] = f"application/x-amz-json-{json_version}"
        headers["x-amzn-ErrorType"] = code
        body = json.dumps({"__type": code, "message": message})
    return status, headers, body


# The access key the local cloud's own clients sign with (`maestro_localcloud`'s SDK config).
HARNESS_ACCESS_KEY = "localcloud"


def limit_sso_admin_rate(calls_per_second: int) -> None:
    """IAM Identity Center takes at most ``calls_per_second`` sso-admin calls a second for a
    region (20, a quota that cannot be raised) and answers ThrottlingException past it; moto
    takes any number. A bucket per region holds a second's calls and refills continuously, as
    AWS's token buckets do. ``0`` turns the limit off. The harness's own calls (access key
    ``localcloud``: seeding, and tests watching what the functions did) are not counted: they
    observe the emulator and must not spend the functions' quota.
    """
    import time

    if calls_per_second <= 0:
        return
    buckets: dict[str, list[float]] = {}
    lock = threading.Lock()

    def throttled(response: Any, request: Any) -> Any:
        access_key, signing_region, signing_name = signed_by(response.headers)
        if "sso-admin" not in (response.boto3_service_name, signing_name) and signing_name != "sso":
            return None
        if access_key == HARNESS_ACCESS_KEY:
            return None
        region = signing_region or response.region
        now = time.monotonic()
        with lock:
            tokens, last = buckets.get(region, [float(calls_per_second), now])
            tokens = min(float(calls_per_second), tokens + (now - last) * calls_per_second)
            allowed = tokens >= 1.0
            buckets[region] = [tokens - 1.0 if allowed else tokens, now]
        if allowed:
            return None
        return aws_error(response, "ThrottlingException", "Rate exceeded", 400)

    before_each_request(throttled)
    forget_on_reset(buckets)


def inject_faults() -> None:
    """Makes matching requests answer an AWS error instead of reaching moto.

    ``POST /moto-api/maestro/faults`` with ``{"service", "action", "region"?, "account"?,
    "code", "message"?, "status"?, "continuationOnly"?}`` adds a fault; ``GET`` lists them
    (each with ``hits``, the requests it answered); ``DELETE`` removes them all. A request
    matches when its service (moto's or boto3's name, or the signing name) and action (any,
    when the fault names none) are the fault's, its signing region and account (moto's, from the access key) are the fault's when
    the fault names them, and, for a ``continuationOnly`` fault, it carries a pagination token.
    The error is written in the service's protocol (ec2, query, rest-xml, rest-json, json), so
    the SDKs read it as they would AWS's.
    """
    from urllib.parse import parse_qs

    from moto.core.responses import BaseResponse
    from moto.moto_api._internal import urls as moto_api_urls

    faults: list[dict[str, Any]] = []
    lock = threading.Lock()

    def parsed_fault(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        for required in ("service", "code"):
            if not isinstance(body.get(required), str) or not body[required]:
                raise ValueError(f"{required!r} must be a non-empty string")
        for optional in ("action", "region", "account", "message"):
            if body.get(optional) is not None and not isinstance(body[optional], str):
                raise ValueError(f"{optional!r} must be a string")
        status = body.get("status", 400)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError("'status' must be an HTTP error status (400-599)")
        continuation_only = body.get("continuationOnly", False)
        if not isinstance(continuation_only, bool):
            raise ValueError("'continuationOnly' must be a boolean")
        return {
            "service": body["service"],
            "action": body.get("action"),
            "region": body.get("region"),
            "account": body.get("account"),
            "code": body["code"],
            "message": body.get("message") or f"Injected fault: {body['code']}",
            "status": status,
            "continuationOnly": continuation_only,
            "hits": 0,
        }

    def faults_api(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        answer_headers = {"Content-Type": "application/json"}
        if request.method == "POST":
            try:
                fault = parsed_fault(json.loads(request_body(request) or b"null"))
            except ValueError as error:  # json.JSONDecodeError is one
                return 400, answer_headers, json.dumps({"error": str(error)})
            with lock:
                faults.append(fault)
        elif request.method == "DELETE":
            with lock:
                faults.clear()
        elif request.method != "GET":
            return 405, answer_headers, json.dumps({"error": "use GET, POST or DELETE"})
        with lock:
            listed = [dict(fault) for fault in faults]
        return 200, answer_headers, json.dumps({"faults": listed})

    def carries_pagination_token(response: BaseResponse) -> bool:
        params: dict[str, Any] = dict(parse_qs(response.parsed_url.query, keep_blank_values=True))
        form = getattr(response.normalized_request, "form", None) or {}
        params.update({key: [value] for key, value in form.items()})
        raw = response.raw_body
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if isinstance(raw, str) and raw.lstrip().startswith("{"):
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                params.update(decoded)
        return any(params.get(name) not in (None, "", [], [""], {}) for name in PAGINATION_TOKENS)

    def matching_fault(response: BaseResponse) -> dict[str, Any] | None:
        if not faults:
            return None
        try:
            action = response._get_action()
        except Exception:
            action = None
        _, signing_region, signing_name = signed_by(response.headers)
        region = signing_region or response.region
        services = {
            name.lower()
            for name in (response.service_name, response.boto3_service_name, signing_name)
            if name
        }
        with lock:
            for fault in faults:
                if fault["service"].lower() not in services:
                    continue
                if fault["action"] and (action or "").lower() != fault["action"].lower():
                    continue
                if fault["region"] and fault["region"] != region:
                    continue
                if fault["account"] and fault["account"] != response.current_account:
                    continue
                if fault["continuationOnly"] and not carries_pagination_token(response):
                    continue
                fault["hits"] += 1
                return dict(fault)
        return None

    def answer_faults(response: BaseResponse, request: Any) -> Any:
        fault = matching_fault(response)
        if fault is None:
            return None
        return aws_error(response, fault["code"], fault["message"], fault["status"])

    before_each_request(answer_faults)
    moto_api_urls.url_paths["{0}/moto-api/maestro/faults"] = faults_api
    forget_on_reset(faults)


def opt_in_regions() -> None:
    """Extension 19: an account's opt-in regions it has not enabled."""
    import copy
    import functools

    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend
    from moto.moto_api._internal import urls as moto_api_urls

    not_enabled: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def settings_api(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        answer_headers = {"Content-Type": "application/json"}
        if request.method == "DELETE":
            with lock:
                not_enabled.clear()
        elif request.method == "POST":
            try:
                body = json.loads(request_body(request) or b"null")
                account, regions = body["account"], body["regions"]
                if not isinstance(account, str) or not isinstance(regions, list):
                    raise ValueError("account must be a string and regions a list")
            except (ValueError, KeyError, TypeError) as error:
                return 400, answer_headers, json.dumps({"error": f"expected {{account, regions}}: {error}"})
            with lock:
                not_enabled.update((account, str(region)) for region in regions)
        else:
            return 405, answer_headers, json.dumps({"error": "use POST or DELETE"})
        with lock:
            listed = sorted(not_enabled)
        return 200, answer_headers, json.dumps({"notEnabled": [list(pair) for pair in listed]})

    def refused(response: BaseResponse, request: Any) -> Any:
        if not not_enabled:
            return None
        _, signing_region, _ = signed_by(response.headers)
        region = signing_region or response.region
        with lock:
            if (response.current_account, region) not in not_enabled:
                return None
        return aws_error(
            response, "AuthFailure", "AWS was not able to validate the provided access credentials", 401
        )

    original = RegionsAndZonesBackend.describe_regions

    @functools.wraps(original)
    def describe_regions(self: Any, region_names: Any = None) -> Any:
        regions = original(self, region_names)
        account = getattr(self, "account_id", None)
        with lock:
            disabled = {region for owner, region in not_enabled if owner == account}
        if not disabled:
            return regions
        answered = []
        for region in regions:
            if region.name in disabled:
                region = copy.copy(region)
                region.opt_in_status = "not-opted-in"
            answered.append(region)
        return answered

    RegionsAndZonesBackend.describe_regions = describe_regions
    before_each_request(refused)
    moto_api_urls.url_paths["{0}/moto-api/maestro/regions-not-enabled"] = settings_api
    forget_on_reset(not_enabled)


def log_dynamodb_writes() -> None:
    """Logs every successful DynamoDB item write, served at ``GET /moto-api/maestro/dynamodb-writes``.

    Each entry is ``{"table", "operation", "write", "key", "writer"}``: the table's name, the
    API call (PutItem, UpdateItem, DeleteItem, BatchWriteItem or TransactWriteItems), the item
    write (Put, Update or Delete), the item's key attributes as plain values, and the access
    key that signed the call (a function's own, on the local host). A write is logged
    once it succeeded: a failed condition logs nothing, and a transaction's writes are logged
    only when it commits. ``DELETE`` empties the log. PartiQL writes are not logged.
    """
    import functools

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_api._internal import urls as moto_api_urls

    writes: list[dict[str, Any]] = []
    # The API call being served on this thread, when it is not the backend method's own, and
    # a transaction's writes until it commits.
    context = threading.local()

    def plain(value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            return value
        kind, inner = next(iter(value.items()))
        if kind == "N":
            try:
                return int(inner)
            except ValueError:
                return float(inner)
        return inner

    def key_of(backend: DynamoDBBackend, table_name: str, attributes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            table = backend.get_table(table_name)
        except Exception:
            return table_name, {name: plain(value) for name, value in attributes.items()}
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return table.name, {name: plain(attributes[name]) for name in names if name in attributes}

    def record(backend: DynamoDBBackend, table_name: str, own_operation: str, write: str, attributes: dict[str, Any]) -> None:
        table, key = key_of(backend, table_name, attributes)
        entry = {
            "table": table,
            "operation": getattr(context, "operation", None) or own_operation,
            "write": write,
            "key": key,
            "writer": getattr(context, "writer", None),
        }
        pending = getattr(context, "pending", None)
        (pending if pending is not None else writes).append(entry)

    def logged(method: Any, own_operation: str, write: str, attributes_at: int, attributes_name: str) -> Any:
        @functools.wraps(method)
        def wrapper(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            with DYNAMODB_WRITES_LOCK:
                answer = method(self, *args, **kwargs)
                table_name = args[0] if args else kwargs["table_name"]
                if len(args) > attributes_at:
                    attributes = args[attributes_at]
                else:
                    attributes = kwargs[attributes_name]
                record(self, table_name, own_operation, write, attributes)
                return answer

        return wrapper

    original_transact = DynamoDBBackend.transact_write_items

    @functools.wraps(original_transact)
    def transact_write_items(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with DYNAMODB_WRITES_LOCK:
            outer_pending = getattr(context, "pending", None)
            outer_operation = getattr(context, "operation", None)
            context.pending, context.operation = [], "TransactWriteItems"
            try:
                answer = original_transact(self, *args, **kwargs)
                committed = context.pending
            finally:
                context.pending, context.operation = outer_pending, outer_operation
            (outer_pending if outer_pending is not None else writes).extend(committed)
            return answer

    # moto's backend batch_write_item is a stub: its response handler writes item by item
    # through put_item and delete_item, which log under BatchWriteItem while it runs.
    original_batch = DynamoHandler.batch_write_item

    @functools.wraps(original_batch)
    def batch_write_item(self: DynamoHandler) -> Any:
        outer_operation = getattr(context, "operation", None)
        context.operation = "BatchWriteItem"
        try:
            return original_batch(self)
        finally:
            context.operation = outer_operation

    original_call_action = DynamoHandler.call_action

    @functools.wraps(original_call_action)
    def call_action(self: DynamoHandler) -> Any:
        context.writer, _, _ = signed_by(self.headers)
        try:
            return original_call_action(self)
        finally:
            context.writer = None

    def writes_api(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        answer_headers = {"Content-Type": "application/json"}
        if request.method == "DELETE":
            with DYNAMODB_WRITES_LOCK:
                writes.clear()
        elif request.method != "GET":
            return 405, answer_headers, json.dumps({"error": "use GET or DELETE"})
        with DYNAMODB_WRITES_LOCK:
            listed = list(writes)
        return 200, answer_headers, json.dumps({"writes": listed})

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        if not hasattr(DynamoDBBackend, name):
            raise SystemExit(f"moto's DynamoDB backend has no {name}; update the launcher")
    if not hasattr(DynamoHandler, "batch_write_item"):
        raise SystemExit("moto's DynamoDB handler has no batch_write_item; update the launcher")
    DynamoDBBackend.put_item = logged(DynamoDBBackend.put_item, "PutItem", "Put", 1, "item_attrs")
    DynamoDBBackend.update_item = logged(DynamoDBBackend.update_item, "UpdateItem", "Update", 1, "key")
    DynamoDBBackend.delete_item = logged(DynamoDBBackend.delete_item, "DeleteItem", "Delete", 1, "key")
    DynamoDBBackend.transact_write_items = transact_write_items
    DynamoHandler.batch_write_item = batch_write_item
    DynamoHandler.call_action = call_action
    moto_api_urls.url_paths["{0}/moto-api/maestro/dynamodb-writes"] = writes_api
    forget_on_reset(writes)


def deliver_events_with_their_account() -> None:
    from moto.events.utils import EventTemplateParser

    EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
        '{"id": "<id>", "time": <time>, "version": "0", "detail-type": "<detail-type>", '
        '"source": "<source>", "account": "<account>", "region": "<region>", '
        '"resources": <resources>, "detail": <detail>}'
    )


def retire_account_status() -> None:
    from moto.organizations.models import FakeAccount

    described = FakeAccount.describe

    def describe(self: FakeAccount) -> dict[str, Any]:
        account = described(self)
        if "State" not in account or "Status" not in account:
            raise RuntimeError("moto's FakeAccount.describe changed: revisit retire_account_status")
        del account["Status"]
        return account

    FakeAccount.describe = describe


def hide_disabled_images() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.responses.amis import AmisResponse

    def describe_images(self: AmisResponse) -> ActionResult:
        self.error_on_dryrun()
        images = self.ec2_backend.describe_images(
            ami_ids=self._get_param("ImageIds", []),
            filters=self._filters_from_querystring(),
            exec_users=self._get_param("ExecutableUsers", []),
            owners=self._get_param("Owners", []),
        )
        if str(self._get_param("IncludeDisabled", "false")).lower() != "true":
            images = [image for image in images if getattr(image, "state", None) != "disabled"]
        return ActionResult({"Images": images})

    AmisResponse.describe_images = describe_images


def announce_execution_status_changes() -> None:
    """Puts Step Functions' event for each execution that ends (SUCCEEDED, FAILED, TIMED_OUT,
    ABORTED) on the default bus of its account and region, with the fields Step Functions
    gives: times in epoch milliseconds, input and output as JSON text, error and cause."""
    from moto.events.models import events_backends
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import (
        BaseExecutionWorkerCommunication,
        Execution,
    )

    original = BaseExecutionWorkerCommunication._reflect_execution_status
    original_stop = Execution.stop

    def stop(self: Execution, stop_date: Any, error: str | None, cause: str | None) -> None:
        self.stopped_by = (error, cause)
        original_stop(self, stop_date, error, cause)

    def millis(moment: Any) -> int | None:
        return int(moment.timestamp() * 1000) if moment is not None else None

    def reflect_and_announce(self: BaseExecutionWorkerCommunication) -> None:
        original(self)
        execution = self.execution
        # StopExecution always ends an execution ABORTED, with the error and cause it was
        # given; moto may end it FAILED with the error of the task it interrupted.
        if getattr(execution, "stopped_by", None) is not None:
            execution.exec_status = ExecutionStatus.ABORTED
            execution.error, execution.cause = execution.stopped_by
        status = getattr(execution.exec_status, "value", execution.exec_status)
        detail = {
            "executionArn": execution.exec_arn,
            "stateMachineArn": execution.state_machine.arn,
            "name": execution.name,
            "status": status,
            "startDate": millis(execution.start_date),
            "stopDate": millis(execution.stop_date),
            "input": json.dumps(execution.input_data),
            "output": json.dumps(execution.output) if status == "SUCCEEDED" else None,
            "error": execution.error,
            "cause": execution.cause,
        }
        events_backends[execution.account_id][execution.region_name].put_events(
            [
                {
                    "Source": "aws.states",
                    "DetailType": "Step Functions Execution Status Change",
                    "EventBusName": "default",
                    "Resources": [execution.exec_arn],
                    "Detail": json.dumps(detail),
                }
            ]
        )

    BaseExecutionWorkerCommunication._reflect_execution_status = reflect_and_announce
    Execution.stop = stop


def make_dynamodb_reads_eventual() -> None:
    """Eventually consistent reads that really are, when a test asks for them.

    ``POST /moto-api/maestro/eventual-consistency`` with ``{"staleMs": N}`` sets the window
    (``0``, the default and the setting after a reset, turns it off); ``GET`` answers it. While
    it is on, each item write keeps the item as it was before, for ``N`` ms; an eventually
    consistent read then answers each item as it was before its first write in the window.
    That is the most DynamoDB may lag (usually well under a second), made deterministic so a
    test that depends on it fails every time. A query or scan runs against a view of the table
    with those items put back as they were, under the writes' lock, so it sees no write
    half-way. The harness's own reads (access key ``localcloud``) stay consistent: they observe
    the emulator.
    """
    import copy
    import functools
    import time
    from collections import defaultdict

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_api._internal import urls as moto_api_urls

    lock = DYNAMODB_WRITES_LOCK
    setting: dict[str, float] = {}
    # table name -> (hash key, range key) -> [(monotonic time of a write, the item before it)]
    before_writes: dict[str, dict[tuple[Any, Any], list[tuple[float, Any]]]] = {}
    # The tables this thread's request reads eventually, and the moment it reads as of.
    reading = threading.local()

    def window() -> float:
        return setting.get("staleMs", 0) / 1000.0

    def key_of(table: Any, attributes: dict[str, Any]) -> tuple[Any, Any]:
        hashed = DynamoType(attributes[table.hash_key_attr])
        ranged = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
        return hashed, ranged

    def kept_before(method: Any, attributes_at: int, attributes_name: str) -> Any:
        @functools.wraps(method)
        def wrapper(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            if window() <= 0:
                return method(self, *args, **kwargs)
            with lock:
                table_name = args[0] if args else kwargs["table_name"]
                attributes = args[attributes_at] if len(args) > attributes_at else kwargs[attributes_name]
                try:
                    table = self.get_table(table_name)
                    hashed, ranged = key_of(table, attributes)
                    before = copy.deepcopy(table.get_item(hashed, ranged))
                except Exception:
                    return method(self, *args, **kwargs)
                answer = method(self, *args, **kwargs)
                before_writes.setdefault(table.name, {}).setdefault((hashed, ranged), []).append(
                    (time.monotonic(), before)
                )
                return answer

        return wrapper

    def stale_items(table: Any, as_of: float) -> dict[tuple[Any, Any], Any]:
        """Each item written after ``as_of``, as it was then (None: it did not exist)."""
        written = before_writes.get(table.name, {})
        stale = {}
        for key in list(written):
            later = [entry for entry in written[key] if entry[0] > as_of]
            if not later:
                del written[key]
                continue
            written[key] = later
            stale[key] = later[0][1]
        return stale

    def stale_view(table: Any, as_of: float) -> Any:
        stale = stale_items(table, as_of)
        if not stale:
            return None
        view = defaultdict(dict, table.items)
        for (hashed, ranged), item in stale.items():
            if table.range_key_attr is None:
                if item is None:
                    view.pop(hashed, None)
                else:
                    view[hashed] = item
                continue
            under = dict(view.get(hashed, {}))
            if item is None:
                under.pop(ranged, None)
            else:
                under[ranged] = item
            if under:
                view[hashed] = under
            else:
                view.pop(hashed, None)
        return view

    def eventual_tables(handler: DynamoHandler) -> set[str]:
        body = handler.body
        if "RequestItems" in body:  # BatchGetItem: consistency is asked per table
            names = {name for name, asked in body["RequestItems"].items() if not asked.get("ConsistentRead")}
        else:
            index = body.get("IndexName")
            table = handler.dynamodb_backend.get_table(body["TableName"])
            global_index = index is not None and any(i.name == index for i in table.global_indexes)
            names = {body["TableName"]} if global_index or not body.get("ConsistentRead") else set()
        return {handler.dynamodb_backend.get_table(name).name for name in names}

    def read(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: DynamoHandler) -> Any:
            if window() <= 0:
                return method(self)
            access_key, _, _ = signed_by(self.headers)
            # Every read takes the lock while the mode is on: a query swaps a table's items
            # for a stale view, which no other read may see.
            with lock:
                if access_key == HARNESS_ACCESS_KEY:
                    return method(self)
                reading.tables, reading.as_of = eventual_tables(self), time.monotonic() - window()
                try:
                    return method(self)
                finally:
                    reading.tables = None

        return wrapper

    def stale_for_this_read(table_name: str) -> tuple[Any, float] | None:
        tables = getattr(reading, "tables", None)
        if not tables:
            return None
        for name in tables:
            if name == table_name:
                return name, reading.as_of
        return None

    original_get_item = DynamoDBBackend.get_item

    @functools.wraps(original_get_item)
    def get_item(self: DynamoDBBackend, table_name: str, keys: dict[str, Any], projection_expressions: Any = None) -> Any:
        table = self.get_table(table_name)
        stale = stale_for_this_read(table.name)
        if stale is None:
            return original_get_item(self, table_name, keys, projection_expressions)
        key = key_of(table, keys)
        items = stale_items(table, stale[1])
        if key not in items:
            return original_get_item(self, table_name, keys, projection_expressions)
        item = items[key]
        if item is not None and projection_expressions:
            item = item.project(projection_expressions)
        return item

    def swapped(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
            table = self.get_table(table_name)
            stale = stale_for_this_read(table.name)
            view = stale_view(table, stale[1]) if stale else None
            if view is None:
                return method(self, table_name, *args, **kwargs)
            current = table.items
            table.items = view
            try:
                return method(self, table_name, *args, **kwargs)
            finally:
                table.items = current

        return wrapper

    def settings_api(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        answer_headers = {"Content-Type": "application/json"}
        if request.method == "POST":
            try:
                stale_ms = json.loads(request_body(request) or b"{}")["staleMs"]
                if not isinstance(stale_ms, int) or isinstance(stale_ms, bool) or stale_ms < 0:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return 400, answer_headers, json.dumps({"error": "send {\"staleMs\": a whole number of milliseconds, 0 or more}"})
            with lock:
                setting["staleMs"] = stale_ms
                before_writes.clear()
        elif request.method != "GET":
            return 405, answer_headers, json.dumps({"error": "use GET or POST"})
        return 200, answer_headers, json.dumps({"staleMs": setting.get("staleMs", 0)})

    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "scan"):
        if not hasattr(DynamoDBBackend, name):
            raise SystemExit(f"moto's DynamoDB backend has no {name}; update the launcher")
    for name in ("get_item", "batch_get_item", "query", "scan"):
        if not hasattr(DynamoHandler, name):
            raise SystemExit(f"moto's DynamoDB handler has no {name}; update the launcher")
    DynamoDBBackend.put_item = kept_before(DynamoDBBackend.put_item, 1, "item_attrs")
    DynamoDBBackend.update_item = kept_before(DynamoDBBackend.update_item, 1, "key")
    DynamoDBBackend.delete_item = kept_before(DynamoDBBackend.delete_item, 1, "key")
    DynamoDBBackend.get_item = get_item
    DynamoDBBackend.query = swapped(DynamoDBBackend.query)
    DynamoDBBackend.scan = swapped(DynamoDBBackend.scan)
    for name in ("get_item", "batch_get_item", "query", "scan"):
        setattr(DynamoHandler, name, read(getattr(DynamoHandler, name)))
    moto_api_urls.url_paths["{0}/moto-api/maestro/eventual-consistency"] = settings_api
    forget_on_reset(setting, before_writes)


def record_calls(path: str | None) -> None:
    """Counts every (caller, service, operation), and appends each new one to ``path``.

    The caller is the access key of the request's SigV4 signature, and for a key that
    ``AssumeRole`` issued, also the role's ARN (read when the call is made: a reset forgets
    the role). The operation is the API's name for it, as botocore's model calls it. The set
    of lines seen outlives resets, so one file holds a whole test run; the counts are served
    at ``/moto-api/maestro/calls``.
    """

    from moto.moto_api._internal import urls as moto_api_urls

    from moto.core.responses import BaseResponse
    from moto.sts.models import sts_backends

    seen: set[tuple[str, str, str]] = set()
    counts: dict[tuple[str, str, str], int] = {}
    lock = threading.Lock()

    def role_behind(access_key: str) -> str | None:
        for partitions in list(sts_backends.values()):
            for backend in list(partitions.values()):
                assumed = backend.get_assumed_role_from_access_key(access_key)
                if assumed is not None:
                    return assumed.role_arn
        return None

    def record(response: BaseResponse, request: Any) -> None:
        access_key, _, signing_name = signed_by(response.headers)
        if access_key is None or signing_name is None:
            return None
        try:
            operation = response._get_action() or response._get_action_from_method_and_request_uri(request)
        except Exception:
            operation = None
        entry = (access_key, signing_name, operation or f"unknown {request.method} {request.path}")
        with lock:
            counts[entry] = counts.get(entry, 0) + 1
            if path is None:
                return None
            for logged in authorised_as(response, entry):
                if logged in seen:
                    continue
                seen.add(logged)
                line = {"accessKey": logged[0], "service": logged[1], "operation": logged[2]}
                if access_key.startswith(("ASIA", "FSIA")):
                    line["roleArn"] = role_behind(access_key)
                with open(path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(line) + "\n")
        return None

    def authorised_as(response: BaseResponse, entry: tuple[str, str, str]) -> list[tuple[str, str, str]]:
        """The calls IAM authorises a call as: DynamoDB's TransactWriteItems is no IAM action,
        each of its items is authorised as the write it makes (PutItem, UpdateItem, ...)."""
        access_key, signing_name, operation = entry
        if (signing_name, operation) != ("dynamodb", "TransactWriteItems"):
            return [entry]
        body = response.body
        if not isinstance(body, dict):
            body = json.loads(body or "{}")
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
        kinds = {kind for item in body.get("TransactItems", []) for kind in item}
        return [(access_key, signing_name, actions.get(kind, f"unknown transaction item {kind}")) for kind in sorted(kinds)]

    def calls_api(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
        answer_headers = {"Content-Type": "application/json"}
        with lock:
            if request.method == "DELETE":
                counts.clear()
            elif request.method != "GET":
                return 405, answer_headers, json.dumps({"error": "use GET or DELETE"})
            listed = [
                {"accessKey": key, "service": service, "operation": operation, "count": count}
                for (key, service, operation), count in sorted(counts.items())
            ]
        return 200, answer_headers, json.dumps({"calls": listed})

    before_each_request(record)
    moto_api_urls.url_paths["{0}/moto-api/maestro/calls"] = calls_api


def forget_on_reset(*state: Any) -> None:
    """Empties the launcher's own state when moto's is reset (`POST /moto-api/reset`)."""
    from moto.moto_api._internal.models import MotoAPIBackend

    original_reset = MotoAPIBackend.reset

    def reset(self: MotoAPIBackend) -> None:
        original_reset(self)
        for entries in state:
            entries.clear()

    MotoAPIBackend.reset = reset


if __name__ == "__main__":
    main()
