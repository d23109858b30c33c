// The template's Parameters, with the same names, types, defaults and constraints.
import { CfnParameter, CfnRule, Fn, Stack, Token, Validations } from 'aws-cdk-lib';

export class Parameters {
  readonly monitorPollFirstWaitSeconds: string;
  readonly monitorPollMaxWaitSeconds: string;
  readonly monitorPollMaxPolls: string;
  readonly authIssuer: string;
  readonly authAudience: string[];
  readonly authTeamsClaim: string;
  readonly operatorsTeam: string;
  readonly ssoInstanceArn: string;
  readonly identityStoreId: string;
  readonly ssoModelConfig: string;
  readonly ssoReconcileSchedule: string;
  readonly secretRotationMonitorSchedule: string;
  readonly discoverySchedule: string;
  readonly discoveryMaxConcurrency: string;
  readonly discoveryMaxCrawlers: string;
  readonly discoveryPagesPerCall: string;
  readonly discoveryGoneAfterCrawls: string;
  readonly discoveryEnvironmentTagKeys: string;
  readonly discoveryRoleTagKeys: string;
  readonly organizationMode: string;
  readonly memberRoleName: string;
  readonly memberExternalId: string;
  readonly organizationRegions: string;
  readonly approvalPolicy: string;
  readonly secretOwners: string;
  readonly approvalSender: string;
  readonly approverSignIn: string;
  readonly approverSignInClientId: string;
  readonly authMetadataUrl: string;

  constructor(stack: Stack) {
    // Number parameters reach functions as environment strings; a Ref of either type is the same.
    const value = (parameter: CfnParameter) => Token.asString(parameter.value);

    this.monitorPollFirstWaitSeconds = value(
      new CfnParameter(stack, 'MonitorPollFirstWaitSeconds', {
        type: 'Number',
        default: 5,
        minValue: 1,
        description:
          'Wait after the first poll of an SSO assignment request that is still in progress; it doubles on each poll.',
      }),
    );
    this.monitorPollMaxWaitSeconds = value(
      new CfnParameter(stack, 'MonitorPollMaxWaitSeconds', {
        type: 'Number',
        default: 60,
        minValue: 1,
        description: 'Longest wait between two polls of one SSO assignment request.',
      }),
    );
    this.monitorPollMaxPolls = value(
      new CfnParameter(stack, 'MonitorPollMaxPolls', {
        type: 'Number',
        default: 40,
        minValue: 1,
        description: 'Polls before a request still in progress is reported as TIMED_OUT.',
      }),
    );

    this.authIssuer = value(
      new CfnParameter(stack, 'AuthIssuer', {
        type: 'String',
        allowedPattern: '^https://[^\\s]+[^/\\s]$',
        description:
          'The OIDC issuer whose tokens the management API accepts, without a trailing slash. For a Cognito user pool, https://cognito-idp.REGION.amazonaws.com/POOL_ID; for Okta, Entra ID or another IdP, its issuer URL.',
      }),
    );
    this.authAudience = new CfnParameter(stack, 'AuthAudience', {
      type: 'CommaDelimitedList',
      description: 'The audiences (client ids) a token must carry in aud, or for Cognito access tokens in client_id.',
    }).valueAsList;
    this.authTeamsClaim = value(
      new CfnParameter(stack, 'AuthTeamsClaim', {
        type: 'String',
        default: 'cognito:groups',
        allowedPattern: '^[\\w:./-]{1,128}$',
        description:
          "The token claim that lists the caller's teams (Cognito groups by default; groups for most IdPs).",
      }),
    );
    this.operatorsTeam = value(
      new CfnParameter(stack, 'OperatorsTeam', {
        type: 'String',
        default: 'maestro-operators',
        allowedPattern: '^[\\w.@+=,-]{1,128}$',
        description:
          'The team that holds admin on every connection and the whole inventory (the platform team that runs Maestro).',
      }),
    );

    this.ssoInstanceArn = value(
      new CfnParameter(stack, 'SsoInstanceArn', {
        type: 'String',
        allowedPattern: '^arn:aws[a-z-]*:sso:::instance/ssoins-[a-zA-Z0-9-.]{16}$',
        description:
          'The IAM Identity Center instance whose assignments Maestro keeps (aws sso-admin list-instances).',
      }),
    );
    this.identityStoreId = value(
      new CfnParameter(stack, 'IdentityStoreId', {
        type: 'String',
        allowedPattern: '^d-[0-9a-z]{10}$',
        description: "The instance's identity store (aws sso-admin list-instances).",
      }),
    );
    this.ssoModelConfig = value(
      new CfnParameter(stack, 'SsoModelConfig', {
        type: 'String',
        default: '{}',
        description: "The SSO model as JSON (docs/sso-model.md); {} keeps every convention's default.",
      }),
    );
    this.ssoReconcileSchedule = value(
      new CfnParameter(stack, 'SsoReconcileSchedule', {
        type: 'String',
        default: 'rate(1 hour)',
        description: 'How often the whole model is re-planned and drift remediated.',
      }),
    );

    // CDK's template validation takes a parameter named "Secret..." for a password.
    Validations.of(stack).acknowledge({
      id: 'CloudFormation-Validate::W2509',
      reason: 'SecretRotationMonitorSchedule is a schedule expression, not a secret',
    });
    this.secretRotationMonitorSchedule = value(
      new CfnParameter(stack, 'SecretRotationMonitorSchedule', {
        type: 'String',
        default: 'rate(1 hour)',
        description:
          'How often secrets rotated by hand are checked against their deadlines (each alerts at most once a day).',
      }),
    );

    this.discoverySchedule = value(
      new CfnParameter(stack, 'DiscoverySchedule', {
        type: 'String',
        default: 'rate(5 minutes)',
        description:
          'How often the discovery scheduler looks for scopes whose interval has passed (each resource type keeps its own interval).',
      }),
    );
    this.discoveryMaxConcurrency = value(
      new CfnParameter(stack, 'DiscoveryMaxConcurrency', {
        type: 'Number',
        default: 10,
        minValue: 1,
        maxValue: 40,
        description: 'Scopes crawled at once by one discovery run.',
      }),
    );
    this.discoveryMaxCrawlers = value(
      new CfnParameter(stack, 'DiscoveryMaxCrawlers', {
        type: 'Number',
        default: 100,
        minValue: 1,
        maxValue: 900,
        description:
          "Crawlers of every discovery run together, at most (a multiple of DiscoveryMaxConcurrency); the scopes left wait for the next tick. Keep it well under the account's Lambda concurrency, which every function shares.",
      }),
    );
    this.discoveryPagesPerCall = value(
      new CfnParameter(stack, 'DiscoveryPagesPerCall', {
        type: 'Number',
        default: 20,
        minValue: 1,
        maxValue: 200,
        description:
          "Pages one crawler call reads before handing back its cursor, which keeps each call well inside its timeout.",
      }),
    );
    this.discoveryGoneAfterCrawls = value(
      new CfnParameter(stack, 'DiscoveryGoneAfterCrawls', {
        type: 'Number',
        default: 2,
        minValue: 1,
        maxValue: 10,
        description: 'Complete, error-free crawls in a row that must miss a resource before it is marked gone.',
      }),
    );
    this.discoveryEnvironmentTagKeys = value(
      new CfnParameter(stack, 'DiscoveryEnvironmentTagKeys', {
        type: 'String',
        default: 'Environment,environment,env,maestro:environment',
        description: "Tag keys read, in order, for an entity's environment.",
      }),
    );
    this.discoveryRoleTagKeys = value(
      new CfnParameter(stack, 'DiscoveryRoleTagKeys', {
        type: 'String',
        default: 'Role,role',
        description: "Tag keys read, in order, for an entity's role.",
      }),
    );

    this.organizationMode = value(
      new CfnParameter(stack, 'OrganizationMode', {
        type: 'String',
        default: 'false',
        allowedValues: ['true', 'false'],
        description:
          'When true, every ACTIVE account of the organisation gets a discovery connection through MemberRoleName.',
      }),
    );
    this.memberRoleName = value(
      new CfnParameter(stack, 'MemberRoleName', {
        type: 'String',
        default: 'MaestroDiscovery',
        allowedPattern: '^[\\w+=,.@-]{1,64}$',
        description:
          'The read-only role discovery assumes in member accounts (infra/member-role.yaml); connections may use roles whose names start with it.',
      }),
    );
    this.memberExternalId = value(
      new CfnParameter(stack, 'MemberExternalId', {
        type: 'String',
        default: '',
        noEcho: true,
        description: "The ExternalId the member role's trust policy requires, for organisation mode.",
      }),
    );
    this.organizationRegions = value(
      new CfnParameter(stack, 'OrganizationRegions', {
        type: 'String',
        default: '',
        description: 'Comma-separated regions organisation mode crawls in each account.',
      }),
    );

    this.approvalPolicy = value(
      new CfnParameter(stack, 'ApprovalPolicy', {
        type: 'String',
        default: '{"rules": []}',
        description:
          'Which actions need an approval, by whom, as JSON (docs/approvals.md). An action no rule covers is refused, so the default lets nothing run until you write the rules.\n',
      }),
    );
    this.secretOwners = value(
      new CfnParameter(stack, 'SecretOwners', {
        type: 'String',
        default: '[]',
        description:
          'Which team owns which secrets, and in which environment they run, as a JSON list of {"prefix", "team", "environment"} matched against the secret\'s name (docs/approvals.md). A secret no rule names belongs to the operators alone and counts as production.\n',
      }),
    );
    this.approvalSender = value(
      new CfnParameter(stack, 'ApprovalSender', {
        type: 'String',
        allowedPattern: '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
        description: 'The address approval emails come from; it must be a verified SES identity.',
      }),
    );
    const approverSignIn = new CfnParameter(stack, 'ApproverSignIn', {
      type: 'String',
      default: 'IDENTITY_PROVIDER',
      allowedValues: ['IDENTITY_PROVIDER', 'LINK_ONLY'],
      description:
        "How an approver shows they are the one a link names. IDENTITY_PROVIDER: they sign in with AuthIssuer's identity provider before deciding. LINK_ONLY: whoever holds the link decides in its approver's name (a forwarded email or a shared mailbox hands the vote over); for organisations without an identity provider only (docs/approvals.md).\n",
    });
    this.approverSignIn = value(approverSignIn);
    const approverSignInClientId = new CfnParameter(stack, 'ApproverSignInClientId', {
      type: 'String',
      default: '',
      allowedPattern: '^[\\w.:/-]{0,256}$',
      description:
        "The OIDC client approvers sign in with (IDENTITY_PROVIDER): a public client (no secret) of AuthIssuer's provider with the authorization code flow and PKCE, scopes openid and email, and ApprovalLinksEndpoint/signed-in as its redirect URI.\n",
    });
    this.approverSignInClientId = value(approverSignInClientId);
    this.authMetadataUrl = value(
      new CfnParameter(stack, 'AuthMetadataUrl', {
        type: 'String',
        default: '',
        allowedPattern: '^(https://[^\\s]+|http://127\\.0\\.0\\.1[:/][^\\s]*)?$',
        description:
          'Where the identity provider publishes its OpenID configuration (HTTPS; it must name AuthIssuer as its issuer); empty for AuthIssuer/.well-known/openid-configuration, right for Cognito, Okta and Entra ID.',
      }),
    );
    new CfnRule(stack, 'ApproversSignInWithAClient', {
      ruleCondition: Fn.conditionEquals(approverSignIn.valueAsString, 'IDENTITY_PROVIDER'),
      assertions: [
        {
          assert: Fn.conditionNot(Fn.conditionEquals(approverSignInClientId.valueAsString, '')),
          assertDescription:
            'ApproverSignIn IDENTITY_PROVIDER needs ApproverSignInClientId, the OIDC client approvers sign in with (or set ApproverSignIn to LINK_ONLY).',
        },
      ],
    });
  }
}
