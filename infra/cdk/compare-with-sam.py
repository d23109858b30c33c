#!/usr/bin/env python3
"""Holds the CDK app (infra/cdk) to infra/template.yaml, the source of truth for Maestro's wiring.

Reads the SAM template as it is now, expands it offline with samtranslator into the plain
CloudFormation SAM would deploy, and compares it with the CDK app's synthesized template
(`npx cdk synth -c bundling=false` writes infra/cdk/cdk.out/Maestro.template.json):

  parameters, conditions, outputs      every attribute
  resources                            the same logical ids of the same types
  Lambda functions                     every property but the code package
  IAM roles                            per function and state machine: the managed policies, and
                                       every (effect, action, resource, condition) granted
  Lambda invoke permissions            per function: who may invoke it
  HTTP APIs                            per API: its routes (route key, authorization, authorizer,
                                       target function) and the stage
  state machines                       the definition file, substitutions, logging, tracing, role
  everything else matched by id        every property (queues with encryption and redrive, topics,
                                       rules with patterns and targets, event source mappings,
                                       tables, alarms, log groups, keys, secrets, queue policies)

Prints every difference, one per line under its category, and exits 1 if there is any.

Both templates write the same thing in different ways, so values are normalised before they are
compared (see `normalise`): an intrinsic function becomes the `${...}` string CloudFormation would
substitute, and an ARN built from a resource's name becomes the resource's own ARN attribute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_SAM = REPO / "infra" / "template.yaml"
DEFAULT_CDK = HERE / "cdk.out" / "Maestro.template.json"

# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

# A logical id as it appears inside ${...}.
_ID = r"[A-Za-z0-9]+"
_STACK_ARN = r"arn:\$\{AWS::Partition\}:%s:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"

# An ARN that the template builds from a resource's name and the ARN attribute of the same
# resource are the same string once deployed. SAM's policy templates build ARNs from names
# (StepFunctionsExecutionPolicy from StateMachineName, ...) where CDK code takes the ARN
# attribute, so both are rewritten to the attribute form. Ref of a topic, a state machine or a
# secret is its ARN; Ref of a table or a function is its name.
_ARN_FROM_NAME = [
    (re.compile(_STACK_ARN % "sqs" + r"\$\{(%s)\.QueueName\}" % _ID), r"${\1.Arn}"),
    (re.compile(_STACK_ARN % "sns" + r"\$\{(%s)\.TopicName\}" % _ID), r"${\1}"),
    (re.compile(_STACK_ARN % "states" + r"stateMachine:\$\{(%s)\.Name\}" % _ID), r"${\1}"),
    (re.compile(_STACK_ARN % "dynamodb" + r"table/\$\{(%s)\}" % _ID), r"${\1.Arn}"),
    (re.compile(_STACK_ARN % "lambda" + r"function:\$\{(%s)\}" % _ID), r"${\1.Arn}"),
    # samtranslator writes AWS managed policies for the partition it runs in; CDK joins
    # AWS::Partition in.
    (re.compile(r"^arn:aws:iam::aws:policy/"), "arn:${AWS::Partition}:iam::aws:policy/"),
]

_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def normalise(value: Any) -> Any:
    """The value with every intrinsic function that yields a string written as that string.

    - {"Ref": "X"} is "${X}" and {"Fn::GetAtt": ["X", "Arn"]} is "${X.Arn}", as Fn::Sub writes
      them; an Fn::Sub is its template with its variables substituted; an Fn::Join of strings
      is the joined string. Other intrinsics (Fn::If, Fn::Select, ...) keep their shape with
      normalised arguments.
    - An ARN built from a resource's name becomes the resource's ARN attribute (_ARN_FROM_NAME).
    - Numbers and booleans become strings: CloudFormation passes "128" and 128 alike.
    """
    if isinstance(value, dict):
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return _canonical_string("${%s}" % argument)
            if key == "Fn::GetAtt":
                parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return _canonical_string("${%s.%s}" % (parts[0], parts[1]))
            if key == "Fn::Sub":
                return _sub(argument)
            if key == "Fn::Join":
                delimiter, parts = argument
                parts = normalise(parts)
                if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                    return _canonical_string(delimiter.join(parts))
                return {key: [delimiter, parts]}
        return {key: normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        return _canonical_string(value)
    return value


def _sub(argument: Any) -> Any:
    template, variables = (argument, {}) if isinstance(argument, str) else argument
    variables = {name: normalise(v) for name, v in variables.items()}
    if not all(isinstance(v, str) for v in variables.values()):
        return {"Fn::Sub": [template, variables]}
    substituted = _SUB_VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)
    return _canonical_string(substituted)


def _canonical_string(text: str) -> str:
    for pattern, replacement in _ARN_FROM_NAME:
        text = pattern.sub(replacement, text)
    return text


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class OfflinePolicyLoader:
    """samtranslator asks IAM for managed policy ARNs only for policies named by a bare name;
    the template names none, so an empty map keeps the transform offline."""

    def load(self) -> dict[str, str]:
        return {}


def load_sam(path: Path) -> tuple[dict, dict[str, Path]]:
    """The template as SAM deploys it, and each state machine's definition file."""
    # Imported here so that the unit tests of the normalisation run without samtranslator.
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    # The transform names the partition after the region; any commercial region gives "aws".
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(path.read_text())
    definitions: dict[str, Path] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        # `sam build` and `sam package` turn local paths into S3 locations; the transform wants
        # the S3 form, and the code package is not compared.
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(properties.get("CodeUri"), str):
            properties["CodeUri"] = f"s3://offline/{logical_id}"
        if resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(
            properties.get("DefinitionUri"), str
        ):
            definitions[logical_id] = (path.parent / properties["DefinitionUri"]).resolve()
            properties["DefinitionUri"] = f"s3://offline/{logical_id}"
    return transform(template, {}, OfflinePolicyLoader()), definitions


def load_cdk(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------

# Tags SAM adds to mark what it created.
SAM_MARKER_TAGS = {"lambda:createdBy", "stateMachine:createdBy", "httpapi:createdBy"}

# Compared by their own categories rather than by logical id: SAM keeps routes and authorizers
# inside the API's OpenAPI body and inline role policies inside the role, and names API
# permissions differently from CDK; CDK adds its own metadata resource.
MATCHED_BY_MEANING = {
    "AWS::Lambda::Permission",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::IAM::Policy",
    "AWS::CDK::Metadata",
}

# Properties each side writes differently and that are compared elsewhere or not at all.
IGNORED_PROPERTIES = {
    # The code package: an S3 object SAM uploads, a CDK asset.
    "AWS::Lambda::Function": {"Code"},
    # Compared by the IAM category.
    "AWS::IAM::Role": {"Policies", "ManagedPolicyArns", "AssumeRolePolicyDocument"},
    # The definition is compared with its file; SAM points at the uploaded file, CDK inlines it.
    "AWS::StepFunctions::StateMachine": {"DefinitionS3Location", "DefinitionString", "Definition"},
    # Compared by the HTTP API category; SAM's OpenAPI body makes an HTTP API, CDK says so.
    "AWS::ApiGatewayV2::Api": {"Body", "BodyS3Location", "Name", "ProtocolType"},
}

# Absent deletion and update-replace policies mean Delete.
DEFAULT_POLICY = "Delete"


class Report:
    def __init__(self) -> None:
        self.differences: dict[str, list[str]] = defaultdict(list)

    def add(self, category: str, message: str) -> None:
        self.differences[category].append(message)

    def print(self, out=sys.stdout) -> int:
        count = sum(len(v) for v in self.differences.values())
        if not count:
            print("compare-with-sam: the CDK app matches infra/template.yaml", file=out)
            return 0
        print(f"compare-with-sam: {count} difference(s) between infra/template.yaml (SAM) and the CDK app (CDK):", file=out)
        for category in sorted(self.differences):
            print(f"\n[{category}]", file=out)
            for message in self.differences[category]:
                print(f"  {message}", file=out)
        return 1


def diff(path: str, sam: Any, cdk: Any) -> list[str]:
    """Differences between two normalised values, each naming where it is."""
    if isinstance(sam, dict) and isinstance(cdk, dict):
        out = []
        for key in sorted(set(sam) | set(cdk)):
            where = f"{path}.{key}" if path else key
            if key not in cdk:
                out.append(f"{where}: only in SAM ({show(sam[key])})")
            elif key not in sam:
                out.append(f"{where}: only in CDK ({show(cdk[key])})")
            else:
                out.extend(diff(where, sam[key], cdk[key]))
        return out
    if isinstance(sam, list) and isinstance(cdk, list) and len(sam) == len(cdk):
        out = []
        for index, (s, c) in enumerate(zip(sam, cdk)):
            out.extend(diff(f"{path}[{index}]", s, c))
        return out
    if sam != cdk:
        # A JSON document held in a string (an access log format, a policy) is compared and shown
        # key by key; the order of its keys does not change what it says.
        sam_json, cdk_json = _json_container(sam), _json_container(cdk)
        if sam_json is not None and cdk_json is not None:
            return diff(f"{path}(json)", sam_json, cdk_json)
        return [f"{path or 'value'}: SAM {show(sam)} != CDK {show(cdk)}"]
    return []


def _json_container(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


def strip_marker_tags(properties: dict) -> dict:
    tags = properties.get("Tags")
    if isinstance(tags, list):
        kept = [t for t in tags if not (isinstance(t, dict) and t.get("Key") in SAM_MARKER_TAGS)]
    elif isinstance(tags, dict):
        kept = {k: v for k, v in tags.items() if k not in SAM_MARKER_TAGS}
    else:
        return properties
    properties = dict(properties)
    if kept:
        properties["Tags"] = kept
    else:
        del properties["Tags"]
    return properties


def comparable(resource: dict) -> dict:
    """What of a resource is compared by id: its properties (less the ignored ones and SAM's
    marker tags), its condition, and its deletion and update-replace policies. DependsOn and
    Metadata are left out: DependsOn only orders creation, Metadata is tooling's."""
    ignored = IGNORED_PROPERTIES.get(resource["Type"], set())
    properties = {k: v for k, v in resource.get("Properties", {}).items() if k not in ignored}
    properties = strip_marker_tags(properties)
    out = {"Properties": normalise(properties)}
    if resource["Type"] == "AWS::Events::Rule":
        out["Properties"] = _sorted_pattern(out["Properties"])
    for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
        out[attribute] = resource.get(attribute, DEFAULT_POLICY)
    if "Condition" in resource:
        out["Condition"] = resource["Condition"]
    return out


def _sorted_pattern(properties: dict) -> dict:
    """The order of values in an event pattern's lists does not matter to EventBridge."""

    def sort_lists(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: sort_lists(v) for k, v in value.items()}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return sorted(value)
        if isinstance(value, list):
            return [sort_lists(v) for v in value]
        return value

    if "EventPattern" in properties:
        properties = dict(properties, EventPattern=sort_lists(properties["EventPattern"]))
    return properties


TYPE_CATEGORIES = {
    "AWS::Lambda::Function": "Lambda functions",
    "AWS::SQS::Queue": "SQS queues",
    "AWS::SQS::QueuePolicy": "SQS queues",
    "AWS::DynamoDB::Table": "DynamoDB tables",
    "AWS::CloudWatch::Alarm": "CloudWatch alarms",
    "AWS::Logs::LogGroup": "log groups",
    "AWS::KMS::Key": "KMS keys",
    "AWS::SecretsManager::Secret": "secrets",
    "AWS::SNS::Topic": "SNS topics",
    "AWS::Events::Rule": "EventBridge rules",
    "AWS::Lambda::EventSourceMapping": "SQS event sources",
    "AWS::StepFunctions::StateMachine": "state machines",
    "AWS::ApiGatewayV2::Stage": "HTTP APIs",
    "AWS::ApiGatewayV2::Api": "HTTP APIs",
    "AWS::IAM::Role": "IAM",
}


def compare_sections(report: Report, sam: dict, cdk: dict) -> None:
    sam_parameters = dict(sam.get("Parameters", {}))
    cdk_parameters = {k: v for k, v in cdk.get("Parameters", {}).items() if k != "BootstrapVersion"}
    # BootstrapVersion is CDK's check that the account was bootstrapped for its assets.
    for name, message in _by_name(sam_parameters, cdk_parameters):
        report.add("parameters", f"{name}: {message}")
    for name, message in _by_name(sam.get("Conditions", {}), cdk.get("Conditions", {})):
        report.add("conditions", f"{name}: {message}")
    # CheckBootstrapVersion goes with BootstrapVersion.
    cdk_rules = {k: v for k, v in cdk.get("Rules", {}).items() if k != "CheckBootstrapVersion"}
    for name, message in _by_name(sam.get("Rules", {}), cdk_rules):
        report.add("rules", f"{name}: {message}")
    for name, message in _by_name(sam.get("Outputs", {}), cdk.get("Outputs", {})):
        report.add("outputs", f"{name}: {message}")


def _by_name(sam: dict, cdk: dict) -> Iterable[tuple[str, str]]:
    for name in sorted(set(sam) | set(cdk)):
        if name not in cdk:
            yield name, "only in SAM"
        elif name not in sam:
            yield name, "only in CDK"
        else:
            for message in diff("", normalise(sam[name]), normalise(cdk[name])):
                yield name, message


def compare_resources(report: Report, sam: dict, cdk: dict) -> None:
    sam_resources, cdk_resources = sam["Resources"], cdk["Resources"]
    for logical_id in sorted(set(sam_resources) | set(cdk_resources)):
        s, c = sam_resources.get(logical_id), cdk_resources.get(logical_id)
        kind = (s or c)["Type"]
        if kind in MATCHED_BY_MEANING and (s is None or c is None or s["Type"] == c["Type"]):
            continue
        category = TYPE_CATEGORIES.get(kind, "other resources")
        if c is None:
            report.add(category, f"{logical_id} ({kind}): only in SAM")
        elif s is None:
            report.add(category, f"{logical_id} ({kind}): only in CDK")
        elif s["Type"] != c["Type"]:
            report.add(category, f"{logical_id}: SAM has a {s['Type']}, CDK a {c['Type']}")
        else:
            for message in diff("", comparable(s), comparable(c)):
                report.add(category, f"{logical_id}: {message}")


# --- IAM -------------------------------------------------------------------------------------


def permission_atoms(statements: Iterable[dict]) -> dict[tuple[str, str, str, str], str]:
    """Every (effect, action, resource, condition) a list of statements grants or denies, each
    with how to show it.

    Statements are split into single actions and resources, so grouping does not matter; Sids
    only name statements for readers (IAM does not evaluate them); IAM actions are
    case-insensitive.
    """
    atoms = {}
    for statement in statements:
        statement = normalise(statement)
        effect = statement.get("Effect", "Allow")
        condition = json.dumps(statement.get("Condition", {}), sort_keys=True)
        when = "" if condition == "{}" else f" when {condition}"
        actions = [("", a) for a in as_list(statement.get("Action"))] + [
            ("not ", a) for a in as_list(statement.get("NotAction"))
        ]
        resources = [("", r) for r in as_list(statement.get("Resource"))] + [
            ("not ", r) for r in as_list(statement.get("NotResource"))
        ]
        for action_kind, action in actions:
            for resource_kind, resource in resources:
                key = (effect, action_kind + action.lower(), resource_kind + show(resource), condition)
                atoms[key] = f"{effect} {action_kind}{action} on {resource_kind}{show(resource)}{when}"
    return atoms


def trust_atoms(document: dict) -> set[tuple[str, str, str, str]]:
    atoms = set()
    for statement in as_list(normalise(document).get("Statement")):
        condition = json.dumps(statement.get("Condition", {}), sort_keys=True)
        for action in as_list(statement.get("Action")):
            for kind, principals in (statement.get("Principal") or {}).items():
                for principal in as_list(principals):
                    atoms.add((statement.get("Effect", "Allow"), action, f"{kind}:{show(principal)}", condition))
    return atoms


def role_grants(template: dict) -> dict[str, dict[str, set]]:
    """Per role: its managed policy ARNs, and the atoms of its inline policies, of the
    AWS::IAM::Policy resources attached to it and of the template's own managed policies it
    names."""
    resources = template["Resources"]
    roles: dict[str, dict[str, set]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource.get("Properties", {})
        statements: list[dict] = []
        for policy in properties.get("Policies", []):
            statements.extend(as_list(policy["PolicyDocument"].get("Statement")))
        managed = set()
        for arn in properties.get("ManagedPolicyArns", []):
            target = arn.get("Ref") if isinstance(arn, dict) else None
            if target in resources and resources[target]["Type"] == "AWS::IAM::ManagedPolicy":
                statements.extend(
                    as_list(resources[target]["Properties"]["PolicyDocument"].get("Statement"))
                )
            else:
                managed.add(show(normalise(arn)))
        roles[logical_id] = {
            "statements": statements,
            "managed": managed,
            "trust": trust_atoms(properties.get("AssumeRolePolicyDocument", {})),
        }
    for resource in resources.values():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        for role in resource["Properties"].get("Roles", []):
            target = role.get("Ref") if isinstance(role, dict) else role
            if target in roles:
                roles[target]["statements"].extend(
                    as_list(resource["Properties"]["PolicyDocument"].get("Statement"))
                )
    return {
        role: {
            "managed": grants["managed"],
            "permissions": permission_atoms(grants["statements"]),
            "trust": grants["trust"],
        }
        for role, grants in roles.items()
    }


def compare_iam(report: Report, sam: dict, cdk: dict) -> None:
    sam_roles, cdk_roles = role_grants(sam), role_grants(cdk)
    for role in sorted(set(sam_roles) & set(cdk_roles)):
        s, c = sam_roles[role], cdk_roles[role]
        for arn in sorted(s["managed"] - c["managed"]):
            report.add("IAM", f"{role}: managed policy only in SAM: {arn}")
        for arn in sorted(c["managed"] - s["managed"]):
            report.add("IAM", f"{role}: managed policy only in CDK: {arn}")
        for side, mine, other in (("SAM", s["permissions"], c["permissions"]), ("CDK", c["permissions"], s["permissions"])):
            for key in sorted(mine.keys() - other.keys()):
                report.add("IAM", f"{role}: only in {side}: {mine[key]}")
        for side, only in (("SAM", s["trust"] - c["trust"]), ("CDK", c["trust"] - s["trust"])):
            for effect, action, principal, condition in sorted(only):
                when = "" if condition == "{}" else f" when {condition}"
                report.add("IAM", f"{role}: trust only in {side}: {effect} {action} by {principal}{when}")


# --- Lambda permissions ----------------------------------------------------------------------

_EXECUTE_API = re.compile(
    r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{(%s)\}/[^/]+/[^/]+(/.*)?$" % _ID
)
_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def invoke_permissions(template: dict) -> dict[str, set[str]]:
    """Per function: who may invoke it.

    API Gateway's are compared by API and route path: SAM scopes each permission to the route's
    method and writes path parameters as `*`, CDK's HTTP integration scopes it to the route's
    path for any method and keeps `{id}`; both APIs hold only the routes compared under HTTP
    APIs, so either lets exactly those routes invoke the function.
    """
    out: dict[str, set[str]] = defaultdict(set)
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Permission":
            continue
        properties = normalise(resource["Properties"])
        function = re.sub(r"^\$\{(%s)(\.Arn)?\}$" % _ID, r"\1", show(properties.get("FunctionName")))
        source = show(properties.get("SourceArn", ""))
        match = _EXECUTE_API.match(source)
        if match:
            source = f"{match.group(1)} {_PATH_PARAMETER.sub('*', match.group(2) or '/')}"
        parts = [properties.get("Principal", "?"), properties.get("Action", "?")]
        if source:
            parts.append(f"from {source}")
        if "SourceAccount" in properties:
            parts.append(f"in account {show(properties['SourceAccount'])}")
        out[function].add(" ".join(parts))
    return out


def compare_invoke_permissions(report: Report, sam: dict, cdk: dict) -> None:
    s, c = invoke_permissions(sam), invoke_permissions(cdk)
    for function in sorted(set(s) | set(c)):
        for grant in sorted(s.get(function, set()) - c.get(function, set())):
            report.add("Lambda invoke permissions", f"{function}: only in SAM: {grant}")
        for grant in sorted(c.get(function, set()) - s.get(function, set())):
            report.add("Lambda invoke permissions", f"{function}: only in CDK: {grant}")


# --- HTTP APIs -------------------------------------------------------------------------------

_INTEGRATION_TARGET = re.compile(r"\$\{(%s)\.Arn\}" % _ID)


def _function_of(uri: Any) -> str:
    match = _INTEGRATION_TARGET.search(show(normalise(uri)))
    return match.group(1) if match else show(normalise(uri))


def sam_routes(template: dict) -> dict[str, dict[str, dict]]:
    """Per API: route key -> what serves it and who may call it, from SAM's OpenAPI bodies."""
    apis = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::ApiGatewayV2::Api" or "Body" not in resource.get("Properties", {}):
            continue
        body = resource["Properties"]["Body"]
        schemes = (body.get("components") or {}).get("securitySchemes") or {}
        default_security = body.get("security")
        routes = {}
        for path, operations in (body.get("paths") or {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict) or "x-amazon-apigateway-integration" not in operation:
                    continue
                integration = operation["x-amazon-apigateway-integration"]
                security = operation.get("security", default_security)
                method = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                routes[f"{method} {path}"] = {
                    "function": _function_of(integration.get("uri")),
                    "payloadFormatVersion": show(normalise(integration.get("payloadFormatVersion", "1.0"))),
                    **_sam_authorization(security, schemes),
                }
        apis[logical_id] = routes
    return apis


def _sam_authorization(security: Any, schemes: dict) -> dict:
    if not security:
        return {"authorization": "NONE"}
    (name, scopes), = security[0].items()
    if name == "AWS_IAM":
        return {"authorization": "AWS_IAM"}
    scheme = schemes.get(name, {})
    authorizer = scheme.get("x-amazon-apigateway-authorizer", {})
    kind = str(authorizer.get("type", "")).upper()
    described = {
        "authorization": "JWT" if kind == "JWT" else "CUSTOM",
        "authorizer": {
            "name": name,
            "identitySource": normalise(as_list(authorizer.get("identitySource"))),
        },
    }
    if kind == "JWT":
        jwt = authorizer.get("jwtConfiguration", {})
        described["authorizer"].update(
            issuer=normalise(jwt.get("issuer")), audience=normalise(as_list(jwt.get("audience")))
        )
    if scopes:
        described["scopes"] = sorted(normalise(scopes))
    return described


def cdk_routes(template: dict) -> dict[str, dict[str, dict]]:
    resources = template["Resources"]
    apis: dict[str, dict[str, dict]] = defaultdict(dict)
    for resource in resources.values():
        if resource["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        properties = resource["Properties"]
        api = properties["ApiId"]["Ref"]
        target = show(normalise(properties.get("Target", "")))
        integration_id = target.removeprefix("integrations/").strip("${}")
        integration = resources.get(integration_id, {}).get("Properties", {})
        route = {
            "function": _function_of(integration.get("IntegrationUri")),
            "payloadFormatVersion": show(normalise(integration.get("PayloadFormatVersion", "1.0"))),
            "authorization": properties.get("AuthorizationType", "NONE"),
        }
        authorizer_ref = properties.get("AuthorizerId")
        if authorizer_ref:
            authorizer = resources[authorizer_ref["Ref"]]["Properties"]
            route["authorizer"] = {
                "name": authorizer.get("Name"),
                "identitySource": normalise(as_list(authorizer.get("IdentitySource"))),
            }
            jwt = authorizer.get("JwtConfiguration")
            if jwt is not None:
                route["authorizer"].update(
                    issuer=normalise(jwt.get("Issuer")), audience=normalise(as_list(jwt.get("Audience")))
                )
        if properties.get("AuthorizationScopes"):
            route["scopes"] = sorted(normalise(properties["AuthorizationScopes"]))
        apis[api][properties["RouteKey"]] = route
    return apis


def compare_http_apis(report: Report, sam: dict, cdk: dict) -> None:
    s, c = sam_routes(sam), cdk_routes(cdk)
    for api in sorted(set(s) | set(c)):
        sam_api, cdk_api = s.get(api, {}), c.get(api, {})
        for route_key in sorted(set(sam_api) | set(cdk_api)):
            if route_key not in cdk_api:
                report.add("HTTP APIs", f"{api}: route {route_key} only in SAM ({show(sam_api[route_key])})")
            elif route_key not in sam_api:
                report.add("HTTP APIs", f"{api}: route {route_key} only in CDK ({show(cdk_api[route_key])})")
            else:
                for message in diff("", sam_api[route_key], cdk_api[route_key]):
                    report.add("HTTP APIs", f"{api}: route {route_key}: {message}")
    # The API's name: SAM takes the OpenAPI title.
    for api in sorted(set(s) & set(c)):
        title = sam["Resources"][api]["Properties"]["Body"].get("info", {}).get("title")
        name = cdk["Resources"][api]["Properties"].get("Name")
        if normalise(title) != normalise(name):
            report.add("HTTP APIs", f"{api}: name: SAM {show(normalise(title))} != CDK {show(normalise(name))}")


# --- State machines --------------------------------------------------------------------------


def compare_state_machine_definitions(report: Report, sam: dict, cdk: dict, files: dict[str, Path]) -> None:
    for logical_id, path in sorted(files.items()):
        resource = cdk["Resources"].get(logical_id)
        if resource is None or resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        definition = resource["Properties"].get("DefinitionString")
        if isinstance(definition, dict) and "Fn::Join" in definition:
            definition = normalise(definition)
        try:
            same = isinstance(definition, str) and json.loads(definition) == json.loads(path.read_text())
        except json.JSONDecodeError as error:
            report.add("state machines", f"{logical_id}: definition is not JSON ({error})")
            continue
        if not same:
            report.add(
                "state machines",
                f"{logical_id}: definition differs from {path.relative_to(REPO)} (CDK must inline that file)",
            )


def compare(sam: dict, cdk: dict, definition_files: dict[str, Path]) -> Report:
    report = Report()
    compare_sections(report, sam, cdk)
    compare_resources(report, sam, cdk)
    compare_iam(report, sam, cdk)
    compare_invoke_permissions(report, sam, cdk)
    compare_http_apis(report, sam, cdk)
    compare_state_machine_definitions(report, sam, cdk, definition_files)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", type=Path, default=DEFAULT_SAM, help="the SAM template (infra/template.yaml)")
    parser.add_argument(
        "--cdk", type=Path, default=DEFAULT_CDK, help="the synthesized template (infra/cdk/cdk.out/Maestro.template.json)"
    )
    args = parser.parse_args(argv)
    if not args.cdk.exists():
        print(
            f"compare-with-sam: no {args.cdk}; synthesize first (cd infra/cdk && npx cdk synth -c bundling=false)",
            file=sys.stderr,
        )
        return 1
    try:
        sam, definition_files = load_sam(args.sam)
    except Exception as error:  # the transform's errors name the resource at fault
        print(f"compare-with-sam: cannot expand {args.sam} with samtranslator: {error}", file=sys.stderr)
        return 1
    return compare(sam, load_cdk(args.cdk), definition_files).print()


if __name__ == "__main__":
    sys.exit(main())
