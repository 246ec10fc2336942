import Foundation
import OneTouchEC2
import Testing

@Suite("Region and endpoint resolution")
struct EC2SettingsTests {
    @Test func configuredRegionWinsOverEnvironment() throws {
        let settings = try EC2Settings.resolve(
            configuredRegion: "eu-central-1", environment: ["AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2"])
        #expect(settings.region == "eu-central-1")
        #expect(settings.endpoint.absoluteString == "https://ec2.eu-central-1.amazonaws.com/")
    }

    @Test func awsRegionWinsOverDefaultRegionWhichWinsOverConfigFile() throws {
        let home = try TemporaryDirectory()
        let config = try home.write("config", "[default]\nregion = ap-south-1\n")
        #expect(
            try EC2Settings.resolve(environment: [
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-west-2", "AWS_CONFIG_FILE": config,
            ]).region == "us-east-1")
        #expect(
            try EC2Settings.resolve(environment: ["AWS_DEFAULT_REGION": "us-west-2", "AWS_CONFIG_FILE": config]).region
                == "us-west-2")
        #expect(try EC2Settings.resolve(environment: ["AWS_CONFIG_FILE": config]).region == "ap-south-1")
    }

    @Test func missingRegionIsAnError() throws {
        let home = try TemporaryDirectory()
        #expect(throws: EC2SettingsError.noRegion) { try EC2Settings.resolve(environment: ["HOME": home.path]) }
    }

    @Test func regionThatCannotBeAHostNameIsRejected() {
        #expect(throws: EC2SettingsError.invalidRegion("us-east-1.evil.com/")) {
            try EC2Settings.resolve(configuredRegion: "us-east-1.evil.com/", environment: [:])
        }
    }

    @Test func endpointPrecedenceIsConfigThenServiceEnvThenGlobalEnv() throws {
        let environment = [
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5055",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:6000",
        ]
        #expect(
            try EC2Settings.resolve(configuredEndpoint: "http://moto:5000/", environment: environment).endpoint.absoluteString
                == "http://moto:5000/")
        #expect(try EC2Settings.resolve(environment: environment).endpoint.absoluteString == "http://127.0.0.1:5055")
        var global = environment
        global["AWS_ENDPOINT_URL_EC2"] = nil
        #expect(try EC2Settings.resolve(environment: global).endpoint.absoluteString == "http://127.0.0.1:6000")
    }

    @Test func endpointFromSharedConfigServicesSection() throws {
        let home = try TemporaryDirectory()
        let config = try home.write(
            "config",
            """
            [profile dev]
            region = us-east-1
            services = local
            endpoint_url = http://global.invalid
            [services local]
            ec2 =
              endpoint_url = http://127.0.0.1:5055
            """)
        let settings = try EC2Settings.resolve(environment: ["AWS_PROFILE": "dev", "AWS_CONFIG_FILE": config])
        #expect(settings.endpoint.absoluteString == "http://127.0.0.1:5055")
        let ignored = try EC2Settings.resolve(environment: [
            "AWS_PROFILE": "dev", "AWS_CONFIG_FILE": config, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",
        ])
        #expect(ignored.endpoint.absoluteString == "https://ec2.us-east-1.amazonaws.com/")
    }

    @Test func endpointWithoutSchemeIsRejected() {
        #expect(throws: EC2SettingsError.invalidEndpoint("ec2.example.com")) {
            try EC2Settings.resolve(configuredRegion: "us-east-1", configuredEndpoint: "ec2.example.com", environment: [:])
        }
    }
}
