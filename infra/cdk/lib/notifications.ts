// Topics shared by every capability, and the key that encrypts them.
import { Stack } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { accountAdministersKey } from './policies';

export class Notifications {
  readonly notificationsKey: kms.CfnKey;
  readonly auditTopic: sns.CfnTopic;
  readonly alertsTopic: sns.CfnTopic;

  constructor(stack: Stack) {
    // CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key, so the
    // topics use this customer managed key, which lets CloudWatch and EventBridge use it.
    this.notificationsKey = new kms.CfnKey(stack, 'NotificationsKey', {
      description: "Encrypts Maestro's audit and alerts topics",
      enableKeyRotation: true,
      keyPolicy: {
        Version: '2012-10-17',
        Statement: [
          accountAdministersKey(stack),
          {
            Sid: 'AlarmsAndRulesPublish',
            Effect: 'Allow',
            Principal: { Service: ['cloudwatch.amazonaws.com', 'events.amazonaws.com'] },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            Resource: '*',
          },
        ],
      },
    });

    this.auditTopic = this.topic(stack, 'AuditTopic', 'Maestro audit');
    this.alertsTopic = this.topic(stack, 'AlertsTopic', 'Maestro alerts');
  }

  /** A topic encrypted with the notifications key (AuditTopic, AlertsTopic, SecretRotatedTopic, ...). */
  topic(stack: Stack, logicalId: string, displayName: string): sns.CfnTopic {
    return new sns.CfnTopic(stack, logicalId, { displayName, kmsMasterKeyId: this.notificationsKey.ref });
  }
}
