const cdk = require('aws-cdk-lib');
const s3 = require('aws-cdk-lib/aws-s3');
const s3n = require('aws-cdk-lib/aws-s3-notifications');
const lambda = require('aws-cdk-lib/aws-lambda');

// On a PUT under uploads/, copies the object's size into processed/<key>.json.
const ON_UPLOAD = `
import json, urllib.parse, boto3

s3 = boto3.client("s3")

def handler(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        head = s3.head_object(Bucket=bucket, Key=key)
        summary = {"key": key, "size": head["ContentLength"], "event": record["eventName"]}
        s3.put_object(
            Bucket=bucket,
            Key="processed/" + key.split("/", 1)[-1] + ".json",
            Body=json.dumps(summary).encode(),
        )
    return {"processed": len(event["Records"])}
`;

class StorageStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);

    this.bucket = new s3.Bucket(this, 'DataBucket', {
      removalPolicy: cdk.RemovalPolicy.DESTROY,
      autoDeleteObjects: true,
    });

    const onUpload = new lambda.Function(this, 'OnUpload', {
      runtime: lambda.Runtime.PYTHON_3_12,
      handler: 'index.handler',
      code: lambda.Code.fromInline(ON_UPLOAD),
      timeout: cdk.Duration.seconds(30),
    });
    this.bucket.grantReadWrite(onUpload);
    this.bucket.addEventNotification(
      s3.EventType.OBJECT_CREATED_PUT,
      new s3n.LambdaDestination(onUpload),
      { prefix: 'uploads/' },
    );

    new cdk.CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });
    new cdk.CfnOutput(this, 'OnUploadFunction', { value: onUpload.functionName });
  }
}

module.exports = { StorageStack };
