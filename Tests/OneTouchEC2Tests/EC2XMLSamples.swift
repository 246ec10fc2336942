/// Response bodies shaped as in protocols.md §1.3 (moto 5.2.1 / AWS element names).
enum EC2XMLSamples {
    static func instanceItem(id: String = "i-0123456789abcdef0", code: Int = 0, name: String = "pending") -> String {
        """
        <item>
            <instanceId>\(id)</instanceId>
            <imageId>ami-0abcdef1234567890</imageId>
            <instanceState><code>\(code)</code><name>\(name)</name></instanceState>
            <privateDnsName>ip-10-0-1-23.ec2.internal</privateDnsName>
            <instanceType>t3.micro</instanceType>
            <launchTime>2026-11-27T09:00:00.000Z</launchTime>
            <placement><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>
            <clientToken>tok-raw-1</clientToken>
            <subnetId>subnet-0123</subnetId>
            <privateIpAddress>10.0.1.23</privateIpAddress>
            <blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-0root</volumeId>
                <status>attached</status><deleteOnTermination>true</deleteOnTermination></ebs></item></blockDeviceMapping>
            <tagSet>
                <item><key>vmprov:request</key><value>req-raw</value></item>
                <item><key>Name</key><value>vm1</value></item>
            </tagSet>
            <metadataOptions><state>applied</state><httpTokens>required</httpTokens>
                <httpPutResponseHopLimit>2</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint>
                <httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags></metadataOptions>
            <iamInstanceProfile><arn>arn:aws:iam::123456789012:instance-profile/prov-ip</arn><id>AIPA1</id></iamInstanceProfile>
        </item>
        """
    }

    /// Real AWS namespace (trailing slash).
    static let runInstances = """
        <?xml version="1.0" encoding="UTF-8"?>
        <RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
          <reservationId>r-0a1b2c3d</reservationId><ownerId>123456789012</ownerId><groupSet/>
          <instancesSet>\(instanceItem())</instancesSet>
        </RunInstancesResponse>
        """

    /// moto's namespace (no trailing slash), two reservations, with a nextToken.
    static let describeInstancesPage1 = """
        <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15">
          <requestId>req-1</requestId>
          <reservationSet>
            <item><reservationId>r-1</reservationId><ownerId>123456789012</ownerId><groupSet/>
              <instancesSet>\(instanceItem(id: "i-1", code: 16, name: "running"))</instancesSet></item>
            <item><reservationId>r-2</reservationId><ownerId>123456789012</ownerId><groupSet/>
              <instancesSet>\(instanceItem(id: "i-2", code: 272, name: "running"))</instancesSet></item>
          </reservationSet>
          <nextToken>page-2-token</nextToken>
        </DescribeInstancesResponse>
        """

    /// No namespace at all; last page (empty nextToken element).
    static let describeInstancesLastPage = """
        <DescribeInstancesResponse>
          <requestId>req-2</requestId>
          <reservationSet>
            <item><reservationId>r-3</reservationId><instancesSet>\(instanceItem(id: "i-3", code: 48, name: "terminated"))</instancesSet></item>
          </reservationSet>
          <nextToken/>
        </DescribeInstancesResponse>
        """

    static let describeInstancesEmpty = """
        <DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>
        """

    static let createVolume = """
        <CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>req-cv</requestId>
          <volumeId>vol-0data</volumeId><size>10</size><snapshotId/><availabilityZone>us-east-1a</availabilityZone>
          <status>creating</status><createTime>2026-11-27T09:00:00.000Z</createTime>
          <encrypted>true</encrypted><kmsKeyId>arn:aws:kms:us-east-1:123456789012:key/abcd</kmsKeyId>
          <volumeType>gp3</volumeType><iops>3000</iops>
          <tagSet><item><key>vmprov:request</key><value>req-1</value></item></tagSet>
        </CreateVolumeResponse>
        """

    static let attachVolume = """
        <AttachVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15">
          <requestId>req-av</requestId>
          <volumeId>vol-0data</volumeId><instanceId>i-1</instanceId><device>/dev/sdf</device>
          <status>attaching</status><attachTime>2026-11-27T09:01:00.000Z</attachTime>
        </AttachVolumeResponse>
        """

    static let describeVolumes = """
        <DescribeVolumesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>req-dv</requestId>
          <volumeSet>
            <item>
              <volumeId>vol-0data</volumeId><size>10</size><availabilityZone>us-east-1a</availabilityZone>
              <status>in-use</status><createTime>2026-11-27T09:00:00.000Z</createTime>
              <attachmentSet><item><volumeId>vol-0data</volumeId><instanceId>i-1</instanceId><device>/dev/sdf</device>
                <status>attached</status><attachTime>2026-11-27T09:01:00.000Z</attachTime>
                <deleteOnTermination>false</deleteOnTermination></item></attachmentSet>
              <encrypted>true</encrypted><kmsKeyId>arn:aws:kms:us-east-1:123456789012:key/abcd</kmsKeyId>
              <volumeType>gp3</volumeType>
              <tagSet><item><key>role</key><value>data</value></item></tagSet>
            </item>
            <item>
              <volumeId>vol-0free</volumeId><size>5</size><availabilityZone>us-east-1b</availabilityZone>
              <status>available</status><attachmentSet/><encrypted>false</encrypted><volumeType>gp2</volumeType>
            </item>
          </volumeSet>
          <nextToken>vol-page-2</nextToken>
        </DescribeVolumesResponse>
        """

    static let terminateInstances = """
        <TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>req-ti</requestId>
          <instancesSet>
            <item><instanceId>i-1</instanceId>
              <currentState><code>32</code><name>shutting-down</name></currentState>
              <previousState><code>16</code><name>running</name></previousState></item>
            <item><instanceId>i-2</instanceId>
              <currentState><code>48</code><name>terminated</name></currentState>
              <previousState><code>48</code><name>terminated</name></previousState></item>
          </instancesSet>
        </TerminateInstancesResponse>
        """

    static let userData = """
        <DescribeInstanceAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>req-ud</requestId><instanceId>i-1</instanceId>
          <userData><value>I2Nsb3VkLWNvbmZpZwo=</value></userData>
        </DescribeInstanceAttributeResponse>
        """

    static let userDataAbsent = """
        <DescribeInstanceAttributeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
          <requestId>req-ud</requestId><instanceId>i-1</instanceId><userData/>
        </DescribeInstanceAttributeResponse>
        """

    static let deleteVolumeAWS = """
        <DeleteVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><return>true</return></DeleteVolumeResponse>
        """

    static let deleteVolumeMoto = """
        <DeleteVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><requestId>r</requestId></DeleteVolumeResponse>
        """

    static let createTagsMoto = """
        <CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><requestId>r</requestId></CreateTagsResponse>
        """

    static func ec2Error(_ code: String, _ message: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <Response><Errors><Error><Code>\(code)</Code><Message>\(message)</Message></Error></Errors>
        <RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>
        """
    }

    static let motoAuthFailure = """
        <?xml version="1.0" encoding="UTF-8"?>
        <ErrorResponse>
            <Errors>
                <Error>
                    <Code>AuthFailure</Code>
                    <Message>AWS was not able to validate the provided access credentials</Message>
                    <Type>Sender</Type>
                </Error>
            </Errors>
        </ErrorResponse>
        """
}
