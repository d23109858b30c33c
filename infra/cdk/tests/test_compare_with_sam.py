"""The comparison's normalisation: what it takes as equal, and what it still tells apart.

Run with `python -m unittest discover -s infra/cdk/tests` (no samtranslator needed).
"""

import importlib.util
import unittest
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "compare_with_sam", Path(__file__).resolve().parent.parent / "compare-with-sam.py"
)
compare_with_sam = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compare_with_sam)

normalise = compare_with_sam.normalise
permission_atoms = compare_with_sam.permission_atoms


def sub(template, **variables):
    return {"Fn::Sub": [template, variables]} if variables else {"Fn::Sub": template}


def join(*parts):
    return {"Fn::Join": ["", list(parts)]}


def ref(name):
    return {"Ref": name}


def get_att(name, attribute):
    return {"Fn::GetAtt": [name, attribute]}


class IntrinsicsAreComparedAsTheStringsTheyBecome(unittest.TestCase):
    def test_sub_and_join_of_the_same_arn_are_equal(self):
        sam = sub("arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default")
        cdk = join("arn:", ref("AWS::Partition"), ":events:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":event-bus/default")
        self.assertEqual(normalise(sam), normalise(cdk))

    def test_sub_variables_are_substituted(self):
        self.assertEqual(normalise(sub("${Name}-x", Name=ref("AWS::StackName"))), "${AWS::StackName}-x")

    def test_get_att_in_both_spellings_is_equal(self):
        self.assertEqual(normalise(get_att("Queue", "Arn")), normalise({"Fn::GetAtt": "Queue.Arn"}))

    def test_numbers_and_booleans_compare_as_strings(self):
        self.assertEqual(normalise(128), normalise("128"))
        self.assertEqual(normalise(True), "true")

    def test_ref_and_get_att_of_one_resource_stay_different(self):
        self.assertNotEqual(normalise(ref("Queue")), normalise(get_att("Queue", "Arn")))

    def test_other_intrinsics_keep_their_shape(self):
        value = {"Fn::If": ["HasPool", ref("Pool"), ref("AWS::NoValue")]}
        self.assertEqual(normalise(value), {"Fn::If": ["HasPool", "${Pool}", "${AWS::NoValue}"]})


class ArnsBuiltFromNamesAreTheResourcesArns(unittest.TestCase):
    def test_queue(self):
        sam = sub(
            "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
            queueName=get_att("SsoChangesQueue", "QueueName"),
        )
        self.assertEqual(normalise(sam), normalise(get_att("SsoChangesQueue", "Arn")))

    def test_state_machine_name_is_its_ref(self):
        sam = sub(
            "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${n}",
            n=get_att("ApprovalStateMachine", "Name"),
        )
        self.assertEqual(normalise(sam), normalise(ref("ApprovalStateMachine")))

    def test_topic_name_is_its_ref(self):
        sam = sub(
            "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${t}", t=get_att("AlertsTopic", "TopicName")
        )
        self.assertEqual(normalise(sam), normalise(ref("AlertsTopic")))

    def test_table_indexes(self):
        sam = sub(
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}/index/*",
            tableName=ref("SsoPlansTable"),
        )
        self.assertEqual(normalise(sam), normalise(join(get_att("SsoPlansTable", "Arn"), "/index/*")))

    def test_function_versions(self):
        sam = sub(
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${functionName}*",
            functionName=ref("ApprovalWorkflowFunction"),
        )
        self.assertEqual(normalise(sam), normalise(join(get_att("ApprovalWorkflowFunction", "Arn"), "*")))

    def test_a_function_named_after_the_stack_is_not_a_resource(self):
        arn = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-secret-rotation"
        self.assertEqual(normalise(sub(arn)), arn)

    def test_managed_policies_in_any_partition_notation(self):
        self.assertEqual(
            normalise("arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"),
            normalise(join("arn:", ref("AWS::Partition"), ":iam::aws:policy/AWSXrayWriteOnlyAccess")),
        )


class PermissionsAreComparedOneActionOnOneResourceAtATime(unittest.TestCase):
    def test_grouping_sids_and_action_case_do_not_matter(self):
        grouped = [{"Sid": "Quota", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": "*"}]
        split = [
            {"Effect": "Allow", "Action": "DynamoDB:GetItem", "Resource": ["*"]},
            {"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": "*"},
        ]
        self.assertEqual(permission_atoms(grouped).keys(), permission_atoms(split).keys())

    def test_a_missing_action_is_a_difference(self):
        sam = [{"Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:Scan"], "Resource": get_att("T", "Arn")}]
        cdk = [{"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": get_att("T", "Arn")}]
        missing = permission_atoms(sam).keys() - permission_atoms(cdk).keys()
        self.assertEqual([permission_atoms(sam)[k] for k in missing], ["Allow dynamodb:Scan on ${T.Arn}"])

    def test_conditions_tell_grants_apart(self):
        plain = [{"Effect": "Allow", "Action": "ses:SendEmail", "Resource": "*"}]
        conditional = [dict(plain[0], Condition={"StringEquals": {"ses:FromAddress": ref("ApprovalSender")}})]
        self.assertNotEqual(permission_atoms(plain).keys(), permission_atoms(conditional).keys())


class WholeTemplates(unittest.TestCase):
    def role_template(self, actions, policy_in_role):
        statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        role = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}}
        resources = {"FnRole": role}
        if policy_in_role:
            role["Properties"]["Policies"] = [{"PolicyName": "p", "PolicyDocument": {"Statement": [statement]}}]
        else:
            resources["FnRolePolicy"] = {
                "Type": "AWS::IAM::Policy",
                "Properties": {"PolicyDocument": {"Statement": [statement]}, "Roles": [ref("FnRole")]},
            }
        return {"Resources": resources}

    def test_inline_and_attached_policies_are_the_same_grants(self):
        sam = self.role_template(["sso:ListInstances"], policy_in_role=True)
        cdk = self.role_template(["sso:ListInstances"], policy_in_role=False)
        self.assertEqual(compare_with_sam.compare(sam, cdk, {}).differences, {})

    def test_an_action_removed_from_the_cdk_policy_is_reported(self):
        sam = self.role_template(["sso:ListInstances", "sso:ListPermissionSets"], policy_in_role=True)
        cdk = self.role_template(["sso:ListInstances"], policy_in_role=False)
        self.assertEqual(
            compare_with_sam.compare(sam, cdk, {}).differences,
            {"IAM": ["FnRole: only in SAM: Allow sso:ListPermissionSets on *"]},
        )

    def test_absent_deletion_policy_is_delete(self):
        queue = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
        sam = {"Resources": {"Q": queue}}
        cdk = {"Resources": {"Q": dict(queue, DeletionPolicy="Delete", UpdateReplacePolicy="Delete")}}
        self.assertEqual(compare_with_sam.compare(sam, cdk, {}).differences, {})

    def test_a_retained_table_is_a_difference(self):
        table = {"Type": "AWS::DynamoDB::Table", "Properties": {}}
        report = compare_with_sam.compare({"Resources": {"T": table}}, {"Resources": {"T": dict(table, DeletionPolicy="Retain")}}, {})
        self.assertEqual(report.differences, {"DynamoDB tables": ["T: DeletionPolicy: SAM Delete != CDK Retain"]})

    def test_a_json_document_in_a_string_is_compared_key_by_key(self):
        def stage(format_):
            return {"Resources": {"S": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"Format": format_}}}}

        sam = stage('{"requestId":"$context.requestId","status":"$context.status"}')
        self.assertEqual(
            compare_with_sam.compare(sam, stage('{"requestId":"$context.requestId"}'), {}).differences,
            {"HTTP APIs": ["S: Properties.Format(json).status: only in SAM ($context.status)"]},
        )
        reordered = stage('{"status":"$context.status","requestId":"$context.requestId"}')
        self.assertEqual(compare_with_sam.compare(sam, reordered, {}).differences, {})

    def test_event_pattern_order_does_not_matter(self):
        def rule(sources):
            return {"Resources": {"R": {"Type": "AWS::Events::Rule", "Properties": {"EventPattern": {"source": sources}}}}}

        self.assertEqual(compare_with_sam.compare(rule(["aws.s3", "aws.ec2"]), rule(["aws.ec2", "aws.s3"]), {}).differences, {})


class InvokePermissions(unittest.TestCase):
    def permission(self, source_arn):
        return {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref("ApiFunction"),
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": source_arn,
            },
        }

    def test_sam_method_scoped_and_cdk_path_scoped_api_permissions_are_equal(self):
        sam = self.permission(
            sub(
                "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/${__Stage__}/GET/approvals/*",
                __ApiId__=ref("Api"),
                __Stage__="*",
            )
        )
        cdk = dict(sam)
        cdk["Properties"] = dict(
            sam["Properties"],
            FunctionName=get_att("ApiFunction", "Arn"),
            SourceArn=join(
                "arn:", ref("AWS::Partition"), ":execute-api:", ref("AWS::Region"), ":", ref("AWS::AccountId"), ":", ref("Api"), "/*/*/approvals/{id}"
            ),
        )
        self.assertEqual(
            compare_with_sam.invoke_permissions({"Resources": {"A": sam}}),
            compare_with_sam.invoke_permissions({"Resources": {"B": cdk}}),
        )


if __name__ == "__main__":
    unittest.main()
