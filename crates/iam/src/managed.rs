//! The AWS managed policies data pipelines attach to their roles, with their published
//! documents (default versions as of early 2026, transcribed from AWS's policy data), so
//! `AttachRolePolicy` with `arn:aws:iam::aws:policy/...` grants what it grants on AWS.

use crate::policy::{DocKind, PolicyDocument, PolicyError};

/// An AWS managed policy (`arn:aws:iam::aws:policy/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedPolicy {
    /// Policy name, e.g. `AmazonS3ReadOnlyAccess`.
    pub name: &'static str,
    /// `arn:aws:iam::aws:policy{path}{name}`.
    pub arn: &'static str,
    /// `/` or `/service-role/`.
    pub path: &'static str,
    /// AWS's description.
    pub description: &'static str,
    /// AWS's policy id (`ANPA...`).
    pub policy_id: &'static str,
    /// The default version's id (`v1`, ...).
    pub default_version_id: &'static str,
    /// ISO 8601 creation time.
    pub create_date: &'static str,
    /// ISO 8601 time of the default version.
    pub update_date: &'static str,
    /// The default version's document (JSON).
    pub document: &'static str,
}

impl ManagedPolicy {
    /// The document, parsed as an identity policy.
    pub fn parsed(&self) -> Result<PolicyDocument, PolicyError> {
        PolicyDocument::parse(self.document, DocKind::Identity)
    }
}

static ALL: [ManagedPolicy; 13] = [
    ManagedPolicy {
        name: "AdministratorAccess",
        arn: "arn:aws:iam::aws:policy/AdministratorAccess",
        path: "/",
        description: "Provides full access to AWS services and resources.",
        policy_id: "ANPAIWMBCKSKIEE64ZLYK",
        default_version_id: "v1",
        create_date: "2015-02-06T18:39:46Z",
        update_date: "2015-02-06T18:39:46Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonS3FullAccess",
        arn: "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        path: "/",
        description: "Provides full access to all buckets via the AWS Management Console.",
        policy_id: "ANPAIFIR6V6BVTRAHWINE",
        default_version_id: "v2",
        create_date: "2015-02-06T18:40:58Z",
        update_date: "2021-09-27T20:16:37Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "s3:*",
                "s3-object-lambda:*"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonS3ReadOnlyAccess",
        arn: "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        path: "/",
        description: "Provides read only access to all buckets via the AWS Management Console.",
        policy_id: "ANPAIZTJ4DXE7G6AGAE6M",
        default_version_id: "v3",
        create_date: "2015-02-06T18:40:59Z",
        update_date: "2023-08-10T21:31:39Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "s3:Get*",
                "s3:List*",
                "s3:Describe*",
                "s3-object-lambda:Get*",
                "s3-object-lambda:List*"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonKinesisFullAccess",
        arn: "arn:aws:iam::aws:policy/AmazonKinesisFullAccess",
        path: "/",
        description: "Provides full access to all streams via the AWS Management Console.",
        policy_id: "ANPAIVF32HAMOXCUYRAYE",
        default_version_id: "v1",
        create_date: "2015-02-06T18:40:29Z",
        update_date: "2015-02-06T18:40:29Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "kinesis:*",
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonKinesisFirehoseFullAccess",
        arn: "arn:aws:iam::aws:policy/AmazonKinesisFirehoseFullAccess",
        path: "/",
        description: "Provides full access to all Amazon Kinesis Firehose Delivery Streams.",
        policy_id: "ANPAJMZQMTZ7FRBFHHAHI",
        default_version_id: "v1",
        create_date: "2015-10-07T18:45:26Z",
        update_date: "2015-10-07T18:45:26Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "firehose:*"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AWSLambdaBasicExecutionRole",
        arn: "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        path: "/service-role/",
        description: "Provides write permissions to CloudWatch Logs.",
        policy_id: "ANPAJNCQGXC42545SKXIK",
        default_version_id: "v1",
        create_date: "2015-04-09T15:03:43Z",
        update_date: "2015-04-09T15:03:43Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonAPIGatewayPushToCloudWatchLogs",
        arn: "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
        path: "/service-role/",
        description: "Allows API Gateway to push logs to user's account.",
        policy_id: "ANPAIK4GFO7HLKYN64ASK",
        default_version_id: "v1",
        create_date: "2015-11-11T23:41:46Z",
        update_date: "2015-11-11T23:41:46Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogGroups",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
                "logs:GetLogEvents",
                "logs:FilterLogEvents"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AWSLambdaKinesisExecutionRole",
        arn: "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
        path: "/service-role/",
        description: "Provides list and read access to Kinesis streams and write permissions to CloudWatch Logs.",
        policy_id: "ANPAJHOLKJPXV4GBRMJUQ",
        default_version_id: "v2",
        create_date: "2015-04-09T15:14:16Z",
        update_date: "2018-11-19T20:09:24Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
                "kinesis:ListStreams",
                "kinesis:SubscribeToShard",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AWSLambdaRole",
        arn: "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
        path: "/service-role/",
        description: "Default policy for AWS Lambda service role.",
        policy_id: "ANPAJX4DPCRGTC4NFDUXI",
        default_version_id: "v1",
        create_date: "2015-02-06T18:41:28Z",
        update_date: "2015-02-06T18:41:28Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "lambda:InvokeFunction"
            ],
            "Resource": [
                "*"
            ]
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AmazonAthenaFullAccess",
        arn: "arn:aws:iam::aws:policy/AmazonAthenaFullAccess",
        path: "/",
        description: "Provide full access to Amazon Athena and scoped access to the dependencies needed to enable querying, writing results, and data management. For more information, see https://docs.aws.amazon.com/athena/latest/ug/managed-policies.html",
        policy_id: "ANPAIPJMLMD4C7RYZ6XCK",
        default_version_id: "v15",
        create_date: "2016-11-30T16:46:01Z",
        update_date: "2026-02-12T18:03:09Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "BaseAthenaPermissions",
            "Effect": "Allow",
            "Action": [
                "athena:*"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseGluePermissions",
            "Effect": "Allow",
            "Action": [
                "glue:CreateDatabase",
                "glue:DeleteDatabase",
                "glue:GetCatalog",
                "glue:GetCatalogs",
                "glue:GetDatabase",
                "glue:GetDatabases",
                "glue:UpdateDatabase",
                "glue:CreateTable",
                "glue:DeleteTable",
                "glue:BatchDeleteTable",
                "glue:UpdateTable",
                "glue:GetTable",
                "glue:GetTables",
                "glue:BatchCreatePartition",
                "glue:CreatePartition",
                "glue:DeletePartition",
                "glue:BatchDeletePartition",
                "glue:UpdatePartition",
                "glue:GetPartition",
                "glue:GetPartitions",
                "glue:BatchGetPartition",
                "glue:StartColumnStatisticsTaskRun",
                "glue:GetColumnStatisticsTaskRun",
                "glue:GetColumnStatisticsTaskRuns",
                "glue:GetCatalogImportStatus"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseQueryResultsPermissions",
            "Effect": "Allow",
            "Action": [
                "s3:GetBucketLocation",
                "s3:GetObject",
                "s3:ListBucket",
                "s3:ListBucketMultipartUploads",
                "s3:ListMultipartUploadParts",
                "s3:AbortMultipartUpload",
                "s3:CreateBucket",
                "s3:PutObject",
                "s3:PutBucketPublicAccessBlock"
            ],
            "Resource": [
                "arn:aws:s3:::aws-athena-query-results-*"
            ]
        },
        {
            "Sid": "BaseAthenaExamplesPermissions",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:ListBucket"
            ],
            "Resource": [
                "arn:aws:s3:::athena-examples*"
            ]
        },
        {
            "Sid": "BaseS3BucketPermissions",
            "Effect": "Allow",
            "Action": [
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:ListAllMyBuckets"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseSNSPermissions",
            "Effect": "Allow",
            "Action": [
                "sns:ListTopics",
                "sns:GetTopicAttributes"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseCloudWatchPermissions",
            "Effect": "Allow",
            "Action": [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:GetMetricData"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseLakeFormationPermissions",
            "Effect": "Allow",
            "Action": [
                "lakeformation:GetDataAccess"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BaseDataZonePermissions",
            "Effect": "Allow",
            "Action": [
                "datazone:ListDomains",
                "datazone:ListProjects",
                "datazone:ListAccountEnvironments"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Sid": "BasePricingPermissions",
            "Effect": "Allow",
            "Action": [
                "pricing:GetProducts"
            ],
            "Resource": [
                "*"
            ]
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AWSGlueServiceRole",
        arn: "arn:aws:iam::aws:policy/service-role/AWSGlueServiceRole",
        path: "/service-role/",
        description: "Policy for AWS Glue service role which allows access to related services including EC2, S3, and Cloudwatch Logs",
        policy_id: "ANPAIRUJCPEBPMEZFAS32",
        default_version_id: "v5",
        create_date: "2017-08-14T13:37:21Z",
        update_date: "2023-09-11T16:39:47Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "glue:*",
                "s3:GetBucketLocation",
                "s3:ListBucket",
                "s3:ListAllMyBuckets",
                "s3:GetBucketAcl",
                "ec2:DescribeVpcEndpoints",
                "ec2:DescribeRouteTables",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcAttribute",
                "iam:ListRolePolicies",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "cloudwatch:PutMetricData"
            ],
            "Resource": [
                "*"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "s3:CreateBucket"
            ],
            "Resource": [
                "arn:aws:s3:::aws-glue-*"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject"
            ],
            "Resource": [
                "arn:aws:s3:::aws-glue-*/*",
                "arn:aws:s3:::*/*aws-glue-*/*"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject"
            ],
            "Resource": [
                "arn:aws:s3:::crawler-public*",
                "arn:aws:s3:::aws-glue-*"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents"
            ],
            "Resource": [
                "arn:aws:logs:*:*:*:/aws-glue/*"
            ]
        },
        {
            "Effect": "Allow",
            "Action": [
                "ec2:CreateTags",
                "ec2:DeleteTags"
            ],
            "Resource": [
                "arn:aws:ec2:*:*:network-interface/*",
                "arn:aws:ec2:*:*:security-group/*",
                "arn:aws:ec2:*:*:instance/*"
            ],
            "Condition": {
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": [
                        "aws-glue-service-resource"
                    ]
                }
            }
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "ReadOnlyAccess",
        arn: "arn:aws:iam::aws:policy/ReadOnlyAccess",
        path: "/",
        description: "Provides read-only access to AWS services and resources.",
        policy_id: "ANPAILL3HVNFSB6DCOWYQ",
        default_version_id: "v1",
        create_date: "2015-02-06T18:39:48Z",
        update_date: "2015-02-06T18:39:48Z",
        // A subset of AWS's document (which lists read actions of every service): its
        // statements for the services this server runs, plus ECR, KMS, EC2 and CloudWatch
        // Logs (read by `cdk` lookups), with AWS's own action patterns.
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadOnlyActions",
            "Effect": "Allow",
            "Action": [
                "apigateway:GET",
                "athena:Batch*",
                "athena:Get*",
                "athena:List*",
                "cloudformation:Describe*",
                "cloudformation:Detect*",
                "cloudformation:Estimate*",
                "cloudformation:Get*",
                "cloudformation:List*",
                "cloudformation:ValidateTemplate",
                "ec2:Describe*",
                "ec2:Get*",
                "ecr:BatchCheck*",
                "ecr:BatchGet*",
                "ecr:Describe*",
                "ecr:Get*",
                "ecr:List*",
                "firehose:Describe*",
                "firehose:List*",
                "glue:BatchGet*",
                "glue:Get*",
                "glue:List*",
                "iam:Generate*",
                "iam:Get*",
                "iam:List*",
                "iam:Simulate*",
                "kinesis:Describe*",
                "kinesis:Get*",
                "kinesis:List*",
                "kms:Describe*",
                "kms:Get*",
                "kms:List*",
                "lambda:Get*",
                "lambda:List*",
                "logs:Describe*",
                "logs:FilterLogEvents",
                "logs:Get*",
                "logs:ListTagsLogGroup",
                "s3:Describe*",
                "s3:Get*",
                "s3:List*",
                "ssm:Describe*",
                "ssm:Get*",
                "ssm:List*",
                "sts:GetAccessKeyInfo",
                "sts:GetCallerIdentity",
                "sts:GetSessionToken"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
    ManagedPolicy {
        name: "AWSCloudFormationReadOnlyAccess",
        arn: "arn:aws:iam::aws:policy/AWSCloudFormationReadOnlyAccess",
        path: "/",
        description: "Provides access to AWS CloudFormation via the AWS Management Console.",
        policy_id: "ANPAJWVBEE4I2POWLODLW",
        default_version_id: "v1",
        create_date: "2015-02-06T18:39:49Z",
        update_date: "2015-02-06T18:39:49Z",
        document: r#"{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "cloudformation:Describe*",
                "cloudformation:EstimateTemplateCost",
                "cloudformation:Get*",
                "cloudformation:List*",
                "cloudformation:ValidateTemplate",
                "cloudformation:Detect*"
            ],
            "Resource": "*"
        }
    ]
}"#,
    },
];

/// Every managed policy the emulator knows.
pub fn all() -> &'static [ManagedPolicy] {
    &ALL
}

/// The managed policy with this name (`AmazonS3ReadOnlyAccess`) or ARN
/// (`arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole`).
pub fn aws_managed_policy(name_or_arn: &str) -> Option<ManagedPolicy> {
    ALL.iter()
        .find(|p| p.name == name_or_arn || p.arn == name_or_arn)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ConditionContext, Decision, PolicySet, Request};

    #[test]
    fn every_document_parses_and_names_are_consistent() {
        for p in all() {
            let doc = p.parsed().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(doc.require_current_version().is_ok(), "{}", p.name);
            assert_eq!(p.arn, format!("arn:aws:iam::aws:policy{}{}", p.path, p.name));
            assert_eq!(aws_managed_policy(p.name), Some(*p));
            assert_eq!(aws_managed_policy(p.arn), Some(*p));
        }
        assert_eq!(all().len(), 13);
        assert!(aws_managed_policy("NoSuchPolicy").is_none());
        for service_role in [
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaKinesisExecutionRole",
            "AWSLambdaRole",
            "AWSGlueServiceRole",
            "AmazonAPIGatewayPushToCloudWatchLogs",
        ] {
            let p = aws_managed_policy(service_role).expect("known");
            assert_eq!(p.path, "/service-role/");
        }
    }

    fn decide(name: &str, action: &str, resource: &str) -> Decision {
        let doc = aws_managed_policy(name).expect("known").parsed().expect("parses");
        let set = PolicySet::compile(&[doc]);
        let ctx = ConditionContext::new();
        set.evaluate(&Request::new(action, resource, &ctx))
    }

    #[test]
    fn documents_evaluate_sensibly() {
        use Decision::*;
        let obj = "arn:aws:s3:::any-bucket/some/key.json";
        assert_eq!(decide("AmazonS3ReadOnlyAccess", "s3:GetObject", obj), Allow);
        assert_eq!(
            decide("AmazonS3ReadOnlyAccess", "s3:ListBucket", "arn:aws:s3:::b"),
            Allow
        );
        assert_eq!(decide("AmazonS3ReadOnlyAccess", "s3:PutObject", obj), ImplicitDeny);
        assert_eq!(decide("AmazonS3ReadOnlyAccess", "s3:DeleteObject", obj), ImplicitDeny);
        assert_eq!(decide("AmazonS3FullAccess", "s3:PutObject", obj), Allow);
        assert_eq!(decide("AmazonS3FullAccess", "kinesis:PutRecord", "*"), ImplicitDeny);
        assert_eq!(decide("AdministratorAccess", "s3:PutObject", obj), Allow);
        assert_eq!(
            decide(
                "AdministratorAccess",
                "iam:CreateRole",
                "arn:aws:iam::123456789012:role/x"
            ),
            Allow
        );
        assert_eq!(decide("AdministratorAccess", "anything:AtAll", "*"), Allow);
        assert_eq!(decide("ReadOnlyAccess", "s3:GetObject", obj), Allow);
        assert_eq!(decide("ReadOnlyAccess", "ssm:GetParameter", "*"), Allow);
        assert_ne!(decide("ReadOnlyAccess", "s3:PutObject", obj), Allow);
        assert_ne!(decide("ReadOnlyAccess", "iam:CreateRole", "*"), Allow);
        assert_eq!(
            decide("AWSCloudFormationReadOnlyAccess", "cloudformation:DescribeStacks", "*"),
            Allow
        );
        assert_ne!(
            decide("AWSCloudFormationReadOnlyAccess", "cloudformation:CreateStack", "*"),
            Allow
        );
        let stream = "arn:aws:kinesis:us-east-1:123456789012:stream/s";
        assert_eq!(decide("AmazonKinesisFullAccess", "kinesis:PutRecords", stream), Allow);
        assert_eq!(
            decide("AWSLambdaKinesisExecutionRole", "kinesis:GetRecords", stream),
            Allow
        );
        assert_eq!(
            decide("AWSLambdaKinesisExecutionRole", "kinesis:PutRecord", stream),
            ImplicitDeny
        );
        assert_eq!(decide("AWSLambdaBasicExecutionRole", "logs:PutLogEvents", "*"), Allow);
        assert_eq!(
            decide(
                "AWSLambdaRole",
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-1:123456789012:function:f"
            ),
            Allow
        );
        let ds = "arn:aws:firehose:us-east-1:123456789012:deliverystream/d";
        assert_eq!(
            decide("AmazonKinesisFirehoseFullAccess", "firehose:PutRecordBatch", ds),
            Allow
        );
        assert_eq!(
            decide("AmazonAthenaFullAccess", "athena:StartQueryExecution", "*"),
            Allow
        );
        assert_eq!(
            decide(
                "AmazonAthenaFullAccess",
                "s3:PutObject",
                "arn:aws:s3:::aws-athena-query-results-1/x"
            ),
            Allow
        );
        assert_eq!(
            decide("AmazonAthenaFullAccess", "s3:PutObject", "arn:aws:s3:::data/x"),
            ImplicitDeny
        );
        assert_eq!(decide("AmazonAthenaFullAccess", "glue:GetTable", "*"), Allow);
        assert_eq!(
            decide(
                "AWSGlueServiceRole",
                "s3:GetObject",
                "arn:aws:s3:::aws-glue-scripts/a.py"
            ),
            Allow
        );
        assert_eq!(
            decide(
                "AWSGlueServiceRole",
                "s3:GetObject",
                "arn:aws:s3:::data/x/aws-glue-tmp/y"
            ),
            Allow
        );
        assert_eq!(
            decide("AWSGlueServiceRole", "s3:GetObject", "arn:aws:s3:::data/x"),
            ImplicitDeny
        );
    }
}
