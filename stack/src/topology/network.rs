//! The stage's network: a VPC with private subnets and no internet route, the endpoints
//! through which its components reach AWS, and the security groups between them.

use super::*;

/// The first two octets of a `/16`, for its subnets.
fn vpc_prefix(cidr: &str) -> String {
    let mut octets = cidr.split('.');
    let (Some(a), Some(b)) = (octets.next(), octets.next()) else { panic!("`{cidr}` is not an IPv4 CIDR") };
    assert!(cidr.ends_with(".0.0/16"), "the stage's VPC must be a /16, not `{cidr}`");
    format!("{a}.{b}")
}

/// The VPC and its private subnets.
pub(super) struct Network {
    pub(super) vpc: LogicalId,
    /// The private subnets' ids, as a JSON list of `Ref`s.
    pub(super) subnet_ids: Value,
}

/// The security groups of the components in the VPC.
pub(super) struct SecurityGroups {
    pub(super) functions: LogicalId,
    pub(super) vpc_link: LogicalId,
    pub(super) load_balancer: LogicalId,
    pub(super) api: LogicalId,
    pub(super) database: LogicalId,
}

impl StageBuilder<'_> {
    /// Network: two private subnets, no internet route; AWS services through endpoints.
    pub(super) fn network(&mut self) -> Network {
        let cfg = self.cfg;
        let prefix = vpc_prefix(cfg.vpc_cidr);
        let vpc = self.t.add(
            "Vpc",
            Resource::new(
                ResourceType::Ec2Vpc,
                json!({
                    "CidrBlock": cfg.vpc_cidr, "EnableDnsHostnames": true, "EnableDnsSupport": true, "Tags": self.tags
                }),
            ),
        );
        let route_table = self.t.add(
            "PrivateRouteTable",
            Resource::new(ResourceType::Ec2RouteTable, json!({ "VpcId": vpc.r#ref(), "Tags": self.tags })),
        );
        let mut subnets = Vec::new();
        for (index, letter) in ["A", "B"].into_iter().enumerate() {
            let subnet = self.t.add(
                &format!("PrivateSubnet{letter}"),
                Resource::new(
                    ResourceType::Ec2Subnet,
                    json!({
                        "VpcId": vpc.r#ref(),
                        "CidrBlock": format!("{prefix}.{}.0/20", index * 16),
                        "AvailabilityZone": availability_zone(index),
                        "MapPublicIpOnLaunch": false,
                        "Tags": self.tags,
                    }),
                ),
            );
            self.t.add(
                &format!("PrivateSubnet{letter}Routes"),
                Resource::new(
                    ResourceType::Ec2SubnetRouteTableAssociation,
                    json!({ "SubnetId": subnet.r#ref(), "RouteTableId": route_table.r#ref() }),
                ),
            );
            subnets.push(subnet.r#ref());
        }
        let subnet_ids = Value::Array(subnets);
        self.t.add(
            "S3Endpoint",
            Resource::new(
                ResourceType::Ec2VpcEndpoint,
                json!({
                    "VpcId": vpc.r#ref(),
                    "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
                    "VpcEndpointType": "Gateway",
                    "RouteTableIds": [route_table.r#ref()],
                }),
            ),
        );
        let endpoint_sg = self.security_group(
            "EndpointSecurityGroup",
            "HTTPS from the VPC to the AWS service endpoints",
            &vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": cfg.vpc_cidr, "Description": "AWS APIs from the VPC" }]),
            json!([{ "IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "no egress" }]),
        );
        // Secrets for the tasks, images for ECS, logs for the awslogs driver.
        for (id, service) in [
            ("SecretsManagerEndpoint", "secretsmanager"),
            ("EcrApiEndpoint", "ecr.api"),
            ("EcrDockerEndpoint", "ecr.dkr"),
            ("LogsEndpoint", "logs"),
        ] {
            self.t.add(
                id,
                Resource::new(
                    ResourceType::Ec2VpcEndpoint,
                    json!({
                        "VpcId": vpc.r#ref(),
                        "ServiceName": sub(format!("com.amazonaws.${{AWS::Region}}.{service}")),
                        "VpcEndpointType": "Interface",
                        "PrivateDnsEnabled": true,
                        "SubnetIds": subnet_ids,
                        "SecurityGroupIds": [endpoint_sg.get_att("GroupId")],
                    }),
                ),
            );
        }
        Network { vpc, subnet_ids }
    }

    /// The security groups of the functions, the API's path (VPC link → load balancer → tasks)
    /// and PostgreSQL.
    pub(super) fn security_groups(&mut self, network: &Network) -> SecurityGroups {
        let cfg = self.cfg;
        let vpc = &network.vpc;
        // HTTPS anywhere reaches only the endpoints (there is no internet route).
        let https_out = json!({ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0", "Description": "AWS APIs through the VPC endpoints" });
        let postgres_out = json!({ "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "CidrIp": cfg.vpc_cidr, "Description": "PostgreSQL" });
        let functions_sg = self.security_group(
            "FunctionsSecurityGroup",
            "The pipeline functions: no inbound; out to PostgreSQL and the AWS endpoints",
            vpc,
            json!([]),
            json!([https_out, postgres_out]),
        );
        let vpc_link_sg = self.security_group(
            "VpcLinkSecurityGroup",
            "The API Gateway VPC link: out to the load balancer only",
            vpc,
            json!([]),
            json!([{ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": cfg.vpc_cidr, "Description": "the load balancer" }]),
        );
        let alb_sg = self.security_group(
            "LoadBalancerSecurityGroup",
            "The internal load balancer: in from the VPC link, out to the API tasks",
            vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "SourceSecurityGroupId": vpc_link_sg.get_att("GroupId"), "Description": "the API Gateway VPC link" }]),
            json!([{ "IpProtocol": "tcp", "FromPort": API_PORT, "ToPort": API_PORT, "CidrIp": cfg.vpc_cidr, "Description": "the API tasks" }]),
        );
        let api_sg = self.security_group(
            "ApiSecurityGroup",
            "The API tasks: in from the load balancer; out to PostgreSQL and the AWS endpoints",
            vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": API_PORT, "ToPort": API_PORT, "SourceSecurityGroupId": alb_sg.get_att("GroupId"), "Description": "the load balancer" }]),
            json!([https_out, postgres_out]),
        );
        let db_sg = self.security_group(
            "DatabaseSecurityGroup",
            "PostgreSQL: in from the functions and the API tasks only",
            vpc,
            json!([
                { "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "SourceSecurityGroupId": functions_sg.get_att("GroupId"), "Description": "the pipeline functions" },
                { "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "SourceSecurityGroupId": api_sg.get_att("GroupId"), "Description": "the API tasks" }
            ]),
            json!([{ "IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "no egress" }]),
        );
        SecurityGroups {
            functions: functions_sg,
            vpc_link: vpc_link_sg,
            load_balancer: alb_sg,
            api: api_sg,
            database: db_sg,
        }
    }
}
