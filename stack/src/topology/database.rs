//! PostgreSQL (RDS) and the stage's generated secrets: the master user's, the application
//! role's, the API's tokens.

use super::*;

/// PostgreSQL and how its clients reach it.
pub(super) struct Database {
    pub(super) id: LogicalId,
    /// The master user's secret, as a grant target.
    pub(super) secret: Target,
    /// The master user's secret's ARN, as `Fn::Sub` text.
    pub(super) secret_arn: String,
    /// The application role's secret (`hiring_app`, which the API and the functions serve
    /// as), as a grant target.
    pub(super) app_secret: Target,
    /// Its ARN, as `Fn::Sub` text.
    pub(super) app_secret_arn: String,
    /// Host, port and database name, for the clients' environment.
    pub(super) env: [(String, Value); 4],
}

impl Database {
    /// The clients' environment: the server, the application role's secret (the pool's user)
    /// and the master user's (the migrations, and the application role's password).
    pub(super) fn client_env(&self) -> Vec<(String, Value)> {
        let mut env = self.env.to_vec();
        env.push(("HIRING_DB_SECRET_ARN".to_owned(), sub(self.app_secret_arn.clone())));
        env.push(("HIRING_DB_ADMIN_SECRET_ARN".to_owned(), sub(self.secret_arn.clone())));
        env
    }

    /// The two secrets, as grant targets.
    pub(super) fn secrets(&self) -> [Target; 2] {
        [self.secret.clone(), self.app_secret.clone()]
    }
}

impl StageBuilder<'_> {
    /// Database: PostgreSQL with a master secret RDS manages and rotates.
    pub(super) fn database(&mut self, network: &Network, groups: &SecurityGroups) -> Database {
        let cfg = self.cfg;
        let db_subnets = self.t.add(
            "DatabaseSubnetGroup",
            Resource::new(
                ResourceType::RdsDbSubnetGroup,
                json!({
                    "DBSubnetGroupDescription": "The private subnets",
                    "SubnetIds": network.subnet_ids,
                    "Tags": self.tags,
                }),
            ),
        );
        let database = self.t.add(
            "Database",
            Resource::new(
                ResourceType::RdsDbInstance,
                json!({
                    "Engine": "postgres",
                    // The major only: RDS picks its default minor and AutoMinorVersionUpgrade
                    // moves it on; a pinned minor drifts from what runs and fails new stacks
                    // once RDS retires it
                    // (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.PostgreSQL.Minor.html).
                    "EngineVersion": "17",
                    "DBInstanceClass": cfg.db_instance_class,
                    "DBName": DB_NAME,
                    "MasterUsername": DB_USER,
                    "ManageMasterUserPassword": true,
                    "AllocatedStorage": cfg.db_storage_gb.to_string(),
                    "MaxAllocatedStorage": cfg.db_max_storage_gb,
                    "StorageType": "gp3",
                    "StorageEncrypted": true,
                    "PubliclyAccessible": false,
                    "MultiAZ": cfg.db_multi_az,
                    "DBSubnetGroupName": db_subnets.r#ref(),
                    "VPCSecurityGroups": [groups.database.get_att("GroupId")],
                    "Port": DB_PORT.to_string(),
                    "BackupRetentionPeriod": cfg.db_backup_retention_days,
                    "DeletionProtection": cfg.deletion_protection,
                    "CopyTagsToSnapshot": true,
                    "AutoMinorVersionUpgrade": true,
                    "EnableCloudwatchLogsExports": ["postgresql"],
                    "Tags": self.tags,
                }),
            )
            .keep(Keep::Snapshot)
            .skip_check(checks::DATABASE_ENHANCED_MONITORING)
            .skip_check(checks::DATABASE_IAM_AUTHENTICATION)
            // cfn-lint 1.58 calls a major-only EngineVersion deprecated (W3691): it knows the
            // minors; RDS documents the major alone as "the default minor of that major".
            .ignore_lint("W3691"),
        );
        // The emulator cannot create RDS's managed secret (moto has no `MasterUserSecret`), so
        // the local stage takes a secret's ARN as a parameter: test-local creates that secret
        // in the emulator's Secrets Manager, holding the local PostgreSQL's user.
        if !cfg.db_multi_az {
            self.t.skip_check(&database, checks::DATABASE_SINGLE_AZ);
        }
        let db_secret_arn = if cfg.emulator {
            self.t.parameter(
                "DatabaseSecretArn",
                "Emulator only: the Secrets Manager secret holding the database user (RDS manages it in AWS)",
                Some("^arn:[a-z-]+:secretsmanager:.+$"),
            );
            "${DatabaseSecretArn}".to_owned()
        } else {
            "${Database.MasterUserSecret.SecretArn}".to_owned()
        };
        let db_secret = Target::Secret { id: database.clone(), arn: db_secret_arn.clone() };
        // The application role's user: generated here, applied to the role by the API and the
        // functions as the master user (the `secrets` crate), and read again when PostgreSQL
        // refuses it. On the emulator, a parameter like the master's.
        let (app_id, app_secret_arn) = self.generated_secret(
            "AppDatabaseSecret",
            "the application role's user (hiring_app)",
            format!(
                "The user {} serves as, hiring_app (least privilege), {{\"username\", \"password\"}}",
                cfg.name("api")
            ),
            json!({ "username": "hiring_app" }),
            "password",
        );
        let app_secret = Target::Secret { id: app_id, arn: app_secret_arn.clone() };
        let db_env = [
            ("HIRING_DB_HOST".to_owned(), database.get_att("Endpoint.Address")),
            ("HIRING_DB_PORT".to_owned(), database.get_att("Endpoint.Port")),
            ("HIRING_DB_NAME".to_owned(), json!(DB_NAME)),
            // TLS that checks the server: its certificate must chain to Amazon RDS's
            // authorities (embedded by the `secrets` crate) and name the endpoint.
            ("HIRING_DB_SSLMODE".to_owned(), json!("verify-full")),
        ];
        Database { id: database, secret: db_secret, secret_arn: db_secret_arn, app_secret, app_secret_arn, env: db_env }
    }

    /// A secret the stack generates: `template` with a random `key` (48 letters and digits);
    /// on the emulator stage, whose CloudFormation does not create secrets, the ARN of one made
    /// beforehand, as the parameter `<id>Arn`. Returns its logical id and its ARN as `Fn::Sub`
    /// text.
    pub(super) fn generated_secret(
        &mut self,
        id: &str,
        holding: &str,
        description: String,
        template: Value,
        key: &str,
    ) -> (LogicalId, String) {
        if self.cfg.emulator {
            let parameter = format!("{id}Arn");
            let id = self.t.parameter(
                &parameter,
                &format!("Emulator only: the Secrets Manager secret holding {holding}"),
                Some("^arn:[a-z-]+:secretsmanager:.+$"),
            );
            return (id, format!("${{{parameter}}}"));
        }
        let id = self.t.add(
            id,
            Resource::new(
                ResourceType::SecretsManagerSecret,
                // No fixed Name: a deleted secret's name stays taken for its recovery window (7 to
                // 30 days), which would block destroying and redeploying the stage
                // (https://docs.aws.amazon.com/secretsmanager/latest/userguide/manage_delete-restore-secret.html).
                json!({
                    "Description": description,
                    "GenerateSecretString": {
                        "SecretStringTemplate": template.to_string(),
                        "GenerateStringKey": key,
                        "PasswordLength": 48,
                        "ExcludePunctuation": true
                    },
                    "Tags": self.tags,
                }),
            )
            .skip_check(checks::SECRET_CMK),
        );
        let arn = format!("${{{id}}}");
        (id, arn)
    }
}
