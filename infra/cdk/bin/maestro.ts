#!/usr/bin/env node
// `npx cdk synth` / `npx cdk deploy` entry point (cdk.json compiles this first).
import { App } from 'aws-cdk-lib';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { MaestroStack } from '../lib/maestro-stack';

const app = new App();
// `-c bundling=false` synthesizes without building the Rust functions (make test does, offline
// and without cargo). The CLI refuses user context under `aws:`, so the app sets CDK's own key.
if (app.node.tryGetContext('bundling') === 'false') {
  app.node.setContext(cxapi.BUNDLING_STACKS, []);
}
// The account and region come from the deploying credentials, as with `sam deploy`;
// `-c stackName=...` deploys a second copy (the rotation function is named after the stack).
new MaestroStack(app, 'Maestro', { stackName: app.node.tryGetContext('stackName'), analyticsReporting: false });
app.synth();
