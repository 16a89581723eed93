const cdk = require('aws-cdk-lib');
const lambda = require('aws-cdk-lib/aws-lambda');
const apigateway = require('aws-cdk-lib/aws-apigateway');

// GET / and GET /{id} echo; POST / puts the body into the stream.
const API_HANDLER = `
import json, os, uuid, boto3

kinesis = boto3.client("kinesis")

def answer(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}

def handler(event, context):
    method = event["httpMethod"]
    params = event.get("pathParameters") or {}
    if method == "POST":
        put = kinesis.put_record(
            StreamName=os.environ["STREAM_NAME"],
            Data=(event.get("body") or "").encode(),
            PartitionKey=str(uuid.uuid4()),
        )
        return answer(202, {"shard": put["ShardId"], "sequence": put["SequenceNumber"]})
    if "id" in params:
        return answer(200, {"id": params["id"]})
    return answer(200, {"stream": os.environ["STREAM_NAME"]})
`;

class ApiStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);
    const { stream } = props;

    const handler = new lambda.Function(this, 'Handler', {
      runtime: lambda.Runtime.PYTHON_3_12,
      handler: 'index.handler',
      code: lambda.Code.fromInline(API_HANDLER),
      environment: { STREAM_NAME: stream.streamName },
    });
    stream.grantWrite(handler);

    // RestApi's default cloudWatchRole adds an IAM role and AWS::ApiGateway::Account.
    const api = new apigateway.RestApi(this, 'Api', {
      restApiName: 'kinesis-data-example',
      deployOptions: { stageName: 'prod' },
    });
    const integration = new apigateway.LambdaIntegration(handler);
    api.root.addMethod('GET', integration);
    api.root.addMethod('POST', integration);
    api.root.addResource('{id}').addMethod('GET', integration);

    new cdk.CfnOutput(this, 'RestApiId', { value: api.restApiId });
    new cdk.CfnOutput(this, 'HandlerName', { value: handler.functionName });
  }
}

module.exports = { ApiStack };
