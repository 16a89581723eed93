const fs = require('fs');
const os = require('os');
const path = require('path');
const cdk = require('aws-cdk-lib');
const athena = require('aws-cdk-lib/aws-athena');
const glue = require('aws-cdk-lib/aws-glue');
const lambda = require('aws-cdk-lib/aws-lambda');
const logs = require('aws-cdk-lib/aws-logs');

// The Rust function: the `echo` example (crates' examples/functions/echo), built for the
// `provided.al2023` runtime. An asset directory holds it as `bootstrap`.
function rustAsset() {
  const built = process.env.KD_RUST_BOOTSTRAP
    || path.join(__dirname, '..', '..', '..', 'target', 'release', 'echo');
  if (!fs.existsSync(built)) {
    throw new Error(
      `the Rust function's binary ${built} does not exist: build it with ` +
      '`cargo build --release -p echo` (or set KD_RUST_BOOTSTRAP to a built bootstrap)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kd-rust-echo-'));
  fs.copyFileSync(built, path.join(dir, 'bootstrap'));
  fs.chmodSync(path.join(dir, 'bootstrap'), 0o755);
  return dir;
}

// A Glue database and table over the JSON lines Firehose delivers under events/, an Athena
// workgroup whose result location is enforced, and a Rust function with its own log group.
class AnalyticsStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);
    const { bucket } = props;

    const database = new glue.CfnDatabase(this, 'Database', {
      catalogId: this.account,
      databaseInput: { name: 'kd_events', description: 'Events delivered by Firehose' },
    });

    const table = new glue.CfnTable(this, 'EventsTable', {
      catalogId: this.account,
      databaseName: 'kd_events',
      tableInput: {
        name: 'events',
        tableType: 'EXTERNAL_TABLE',
        parameters: { classification: 'json' },
        storageDescriptor: {
          columns: [
            { name: 'sensor', type: 'string' },
            { name: 'reading', type: 'int' },
            { name: 'via', type: 'string' },
            { name: 'n', type: 'int' },
          ],
          location: `s3://${bucket.bucketName}/events/`,
          inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
          serdeInfo: { serializationLibrary: 'org.openx.data.jsonserde.JsonSerDe' },
        },
      },
    });
    table.node.addDependency(database);

    const workgroup = new athena.CfnWorkGroup(this, 'WorkGroup', {
      name: 'kd-analytics',
      description: 'Queries over the delivered events',
      recursiveDeleteOption: true,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        resultConfiguration: { outputLocation: `s3://${bucket.bucketName}/athena-results/` },
      },
    });

    const logGroup = new logs.LogGroup(this, 'EchoLogs', {
      retention: logs.RetentionDays.ONE_WEEK,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });
    const echo = new lambda.Function(this, 'RustEcho', {
      runtime: lambda.Runtime.PROVIDED_AL2023,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(rustAsset()),
      memorySize: 128,
      timeout: cdk.Duration.seconds(10),
      logGroup,
    });

    new cdk.CfnOutput(this, 'DatabaseName', { value: database.ref });
    new cdk.CfnOutput(this, 'TableName', { value: table.ref });
    new cdk.CfnOutput(this, 'WorkGroupName', { value: workgroup.ref });
    new cdk.CfnOutput(this, 'RustFunction', { value: echo.functionName });
    new cdk.CfnOutput(this, 'RustFunctionLogGroup', { value: logGroup.logGroupName });
  }
}

module.exports = { AnalyticsStack };
