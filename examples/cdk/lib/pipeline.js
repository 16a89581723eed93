const cdk = require('aws-cdk-lib');
const iam = require('aws-cdk-lib/aws-iam');
const kinesis = require('aws-cdk-lib/aws-kinesis');
const firehose = require('aws-cdk-lib/aws-kinesisfirehose');

class PipelineStack extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);
    const { bucket } = props;

    this.stream = new kinesis.Stream(this, 'Events', {
      shardCount: 2,
      retentionPeriod: cdk.Duration.hours(24),
      // CDK keeps streams by default (RETAIN); this example is meant to be destroyed.
      removalPolicy: cdk.RemovalPolicy.DESTROY,
    });

    const deliveryRole = new iam.Role(this, 'DeliveryRole', {
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com'),
    });
    this.stream.grantRead(deliveryRole);
    bucket.grantReadWrite(deliveryRole);

    const delivery = new firehose.CfnDeliveryStream(this, 'ToBucket', {
      deliveryStreamType: 'KinesisStreamAsSource',
      kinesisStreamSourceConfiguration: {
        kinesisStreamArn: this.stream.streamArn,
        roleArn: deliveryRole.roleArn,
      },
      extendedS3DestinationConfiguration: {
        bucketArn: bucket.bucketArn,
        roleArn: deliveryRole.roleArn,
        prefix: 'events/',
        errorOutputPrefix: 'errors/',
        bufferingHints: { intervalInSeconds: 1, sizeInMBs: 1 },
        compressionFormat: 'UNCOMPRESSED',
      },
    });
    // The role's grants must be in place before Firehose starts reading.
    delivery.node.addDependency(deliveryRole);

    new cdk.CfnOutput(this, 'StreamName', { value: this.stream.streamName });
    new cdk.CfnOutput(this, 'DeliveryStreamName', { value: delivery.ref });
  }
}

module.exports = { PipelineStack };
