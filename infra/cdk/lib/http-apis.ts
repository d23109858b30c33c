// The two HTTP APIs: the management API (JWT-authorised; every capability adds its routes) and
// the approval links' own public API.
import { Aws, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { sameLogicalId } from './naming';
import { Parameters } from './parameters';
import { logGroup } from './stores';

/**
 * Every route needs a bearer token from AuthIssuer for AuthAudience; the functions read the
 * caller's address and teams from its verified claims (docs/access.md).
 */
export function maestroHttpApi(stack: Stack, parameters: Parameters): apigwv2.HttpApi {
  const authorizer = new HttpJwtAuthorizer('MaestroJwt', parameters.authIssuer, {
    authorizerName: 'MaestroJwt',
    identitySource: ['$request.header.Authorization'],
    jwtAudience: parameters.authAudience,
  });
  const api = httpApi(stack, 'MaestroHttpApi', authorizer);
  // Who called which route and how it went; never query strings or bodies.
  defaultStage(stack, api, {
    accessLogFormat: accessLogFormat({
      requestId: '$context.requestId',
      requestTime: '$context.requestTime',
      sourceIp: '$context.identity.sourceIp',
      caller: '$context.authorizer.claims.sub',
      routeKey: '$context.routeKey',
      status: '$context.status',
      responseLength: '$context.responseLength',
      latency: '$context.responseLatency',
      integrationError: '$context.integrationErrorMessage',
      lambdaRequestId: '$context.integration.requestId',
    }),
  });
  return api;
}

/**
 * Public (whoever holds a signed link may open its confirm page), throttled, and with nothing
 * else on it.
 */
export function approvalLinksApi(stack: Stack): apigwv2.HttpApi {
  const api = httpApi(stack, 'ApprovalLinksApi', undefined);
  defaultStage(stack, api, {
    throttle: { burstLimit: 20, rateLimit: 10 },
    // The route key only: the path names the approval, the query string carries a signature.
    accessLogFormat: accessLogFormat({
      requestId: '$context.requestId',
      requestTime: '$context.requestTime',
      sourceIp: '$context.identity.sourceIp',
      routeKey: '$context.routeKey',
      status: '$context.status',
      latency: '$context.responseLatency',
      integrationError: '$context.integrationErrorMessage',
      lambdaRequestId: '$context.integration.requestId',
    }),
  });
  return api;
}

function httpApi(stack: Stack, logicalId: string, defaultAuthorizer: apigwv2.IHttpRouteAuthorizer | undefined) {
  // SAM names both APIs after the stack (the OpenAPI title it generates).
  const api = new apigwv2.HttpApi(stack, logicalId, {
    apiName: Aws.STACK_NAME,
    createDefaultStage: false,
    defaultAuthorizer,
  });
  sameLogicalId(api, logicalId);
  return api;
}

interface StageProps {
  readonly accessLogFormat: string;
  readonly throttle?: apigwv2.ThrottleSettings;
}

// SAM's name for the stage it creates, and its access log group next to it.
function defaultStage(stack: Stack, api: apigwv2.HttpApi, props: StageProps): void {
  const name = api.node.id;
  const accessLogs = logGroup(stack, `${name}AccessLogGroup`);
  const stage = new apigwv2.HttpStage(stack, `${name}ApiGatewayDefaultStage`, {
    httpApi: api,
    stageName: '$default',
    autoDeploy: true,
    throttle: props.throttle,
    accessLogSettings: {
      destination: new apigwv2.LogGroupLogDestination(accessLogs),
      format: apigw.AccessLogFormat.custom(props.accessLogFormat),
    },
  });
  sameLogicalId(stage, `${name}ApiGatewayDefaultStage`);
}

/** The access log line as the template writes it: one JSON object, keys in this order. */
function accessLogFormat(fields: Record<string, string>): string {
  return JSON.stringify(fields);
}
