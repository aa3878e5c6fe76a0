"""parliament (Duo Labs' IAM linter) over every IAM policy of the synthesized templates.

Run by `cargo xtask lint` with the lint venv's Python: `python iam_lint.py TEMPLATE...`. Prints
one JSON object per line for each finding not in ALLOWED, and exits 1 if there was one.

Policies: the inline policies of every AWS::IAM::Role, and the resource policies of
AWS::S3::BucketPolicy and AWS::SQS::QueuePolicy. Trust policies carry no Resource, which
parliament requires; each of their statements is given the role's own ARN as its Resource so
the rest (principal, action, condition) is checked.

CloudFormation's intrinsics are replaced by what CloudFormation would put there, for a fixed
account, region and partition, so parliament checks real ARN shapes: `Ref` of a parameter or
resource, `Fn::GetAtt` of the attributes the templates use, `Fn::Sub`, `Fn::If` (first branch).
A reference this script cannot resolve is an error, not a guess.
"""

import json
import re
import sys

import parliament

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"

# (role or policy's resource, issue, action) -> why the finding is kept.
ALLOWED = {
    ("DeployBuildRole", "RESOURCE_MISMATCH", "states:DescribeExecution"): (
        "parliament wants every resource type an action accepts in one statement "
        "(duo-labs/parliament#48); the execution ARN is the right one"
    ),
    ("DeployBuildRole", "RESOURCE_MISMATCH", "states:ListExecutions"): (
        "parliament#48 as above; ListExecutions is authorized on the state machine's ARN"
    ),
    ("PipelineRole", "RESOURCE_MISMATCH", "codeconnections:UseConnection"): (
        "one connection ARN serves both prefixes: connections made since March 2024 are "
        "codeconnections:, older ones codestar-connections:, and which one is known at deploy time only"
    ),
    ("PipelineRole", "RESOURCE_MISMATCH", "codestar-connections:UseConnection"): (
        "the same connection ARN, as above"
    ),
}
# The network-interface actions of a function in a VPC are granted on "*" as AWS's managed
# policy AWSLambdaVPCAccessExecutionRole does (stack/src/checks.rs, NETWORK_INTERFACE_ACTIONS).
for role in ("ValidateRole", "ProcessRole", "BackupRole"):
    for action in (
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ):
        ALLOWED[(role, "RESOURCE_STAR", action)] = "Lambda's VPC access, as AWSLambdaVPCAccessExecutionRole grants it"


class Resolver:
    def __init__(self, template, stack):
        self.resources = template.get("Resources", {})
        self.parameters = template.get("Parameters", {})
        self.stack = stack

    def prop(self, lid, key):
        value = self.resources[lid].get("Properties", {}).get(key)
        return None if value is None else self.resolve(value)

    def generated(self, lid):
        return f"{self.stack}-{lid}-1A2B3C4D5E6F".lower()

    def ref(self, lid):
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
                  "AWS::StackName": self.stack, "AWS::URLSuffix": "amazonaws.com"}
        if lid in pseudo:
            return pseudo[lid]
        if lid in self.parameters:
            if lid.endswith("SecretArn"):
                return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{self.stack}/{lid}-AbCdEf"
            if lid == "ConnectionArn":
                return f"arn:{PARTITION}:codeconnections:{REGION}:{ACCOUNT}:connection/11111111-2222-3333-4444-555555555555"
            return self.parameters[lid].get("Default") or f"{lid}-value"
        kind = self.resources[lid]["Type"]
        name = {
            "AWS::S3::Bucket": "BucketName", "AWS::StepFunctions::StateMachine": "StateMachineName",
            "AWS::SNS::Topic": "TopicName", "AWS::IAM::Role": "RoleName", "AWS::Athena::WorkGroup": "Name",
        }.get(kind)
        named = (self.prop(lid, name) if name else None) or self.generated(lid)
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{named}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{named}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{lid}-AbCdEf"
        if kind == "AWS::CodeStarConnections::Connection":
            return f"arn:{PARTITION}:codestar-connections:{REGION}:{ACCOUNT}:connection/11111111-2222-3333-4444-555555555555"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.prop(lid, 'QueueName') or self.generated(lid)}"
        if kind == "AWS::ECS::TaskDefinition":
            # Ref is the task definition's ARN with its revision.
            return f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task-definition/{self.prop(lid, 'Family')}:1"
        return named

    def get_att(self, lid, attribute):
        kind = self.resources[lid]["Type"]
        if attribute == "Arn":
            arns = {
                "AWS::S3::Bucket": lambda: f"arn:{PARTITION}:s3:::{self.ref(lid)}",
                "AWS::Logs::LogGroup": lambda: f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{self.prop(lid, 'LogGroupName')}:*",
                "AWS::Lambda::Function": lambda: f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{self.prop(lid, 'FunctionName')}",
                "AWS::CodeBuild::Project": lambda: f"arn:{PARTITION}:codebuild:{REGION}:{ACCOUNT}:project/{self.prop(lid, 'Name')}",
                "AWS::IAM::Role": lambda: f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.ref(lid)}",
                "AWS::SQS::Queue": lambda: f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{self.prop(lid, 'QueueName')}",
                "AWS::Events::Rule": lambda: f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:rule/{self.generated(lid)}",
                "AWS::ECR::Repository": lambda: f"arn:{PARTITION}:ecr:{REGION}:{ACCOUNT}:repository/{self.prop(lid, 'RepositoryName')}",
            }
            if kind in arns:
                return arns[kind]()
        if kind == "AWS::RDS::DBInstance" and attribute == "MasterUserSecret.SecretArn":
            return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-11111111-2222-3333-4444-555555555555-AbCdEf"
        raise KeyError(f"cannot resolve Fn::GetAtt {lid}.{attribute} ({kind}): teach stack/rules/iam_lint.py")

    def sub(self, text):
        def replace(match):
            name = match.group(1)
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                return self.get_att(*(argument if isinstance(argument, list) else argument.split(".", 1)))
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::If":
                return self.resolve(argument[1])
        return {key: self.resolve(item) for key, item in value.items()}


def policies(path, template):
    base = path.replace("\\", "/").split("/")
    stack = "hiring-bootstrap" if base[-1] == "bootstrap.json" else (
        f"hiring-{base[-2]}-pipeline" if base[-1] == "pipeline.json" else f"hiring-{base[-2]}")
    resolver = Resolver(template, stack)
    for lid, resource in sorted(template.get("Resources", {}).items()):
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield lid, policy["PolicyName"], resolver.resolve(policy["PolicyDocument"])
            trust = resolver.resolve(properties["AssumeRolePolicyDocument"])
            role_arn = resolver.get_att(lid, "Arn")
            for statement in trust["Statement"]:
                statement.setdefault("Resource", role_arn)
            yield lid, "trust", trust
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"):
            yield lid, "resource policy", resolver.resolve(properties["PolicyDocument"])


def main(paths):
    found = 0
    for path in paths:
        with open(path) as file:
            template = json.load(file)
        for lid, name, document in policies(path, template):
            analyzed = parliament.analyze_policy_string(json.dumps(document), include_community_auditors=False)
            for finding in analyzed.findings:
                # The actions a finding is about: RESOURCE_STAR lists them, RESOURCE_MISMATCH
                # gives each with the resource format it wanted.
                details = finding.detail if isinstance(finding.detail, list) else [finding.detail]
                actions = [d.get("action") if isinstance(d, dict) else d for d in details]
                if actions and all((lid, finding.issue, action) in ALLOWED for action in actions):
                    continue
                found += 1
                print(json.dumps({"template": path, "resource": lid, "policy": name, "issue": finding.issue,
                                  "detail": str(finding.detail)}))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
