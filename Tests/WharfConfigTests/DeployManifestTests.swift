import Foundation
import Testing
import WharfConfig
import Yams

/// Schema sanity of everything under deploy/: Kubernetes manifests, compose files, HAProxy configs,
/// client snippets, the Dockerfile and the systemd unit. (scripts/check-deploy.sh runs the real tools:
/// haproxy -c, systemd-analyze verify, wharf config check.)
@Suite(.tags(.unit)) struct DeployManifestTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let deploy = packageRoot.appendingPathComponent("deploy")

    typealias Object = [String: Any]

    // MARK: - Loading

    static func text(_ relative: String) throws -> String {
        try String(contentsOf: self.deploy.appendingPathComponent(relative), encoding: .utf8)
    }

    static func exists(_ relative: String) -> Bool {
        FileManager.default.fileExists(atPath: self.deploy.appendingPathComponent(relative).standardizedFileURL.path)
    }

    /// Every document of a (possibly multi-document) YAML file; throws on a syntax error.
    static func documents(_ relative: String) throws -> [Any] {
        var sequence = try Yams.load_all(yaml: try self.text(relative))
        var out: [Any] = []
        while let document = sequence.next() { out.append(document) }
        if let error = sequence.error { throw error }
        return out
    }

    /// All YAML files under deploy/, relative to it.
    static func yamlFiles() -> [String] {
        let root = self.deploy.standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
    }

    static func kubernetesObjects() throws -> [(file: String, object: Object)] {
        try self.yamlFiles().filter { $0.hasPrefix("kubernetes/") }.flatMap { file in
            try self.documents(file).compactMap { $0 as? Object }.map { (file, $0) }
        }
    }

    static func find(_ objects: [(file: String, object: Object)], kind: String, name: String? = nil) -> Object? {
        objects.first { $0.object["kind"] as? String == kind && (name == nil || self.name(of: $0.object) == name) }?.object
    }

    static func name(of object: Object) -> String? { (object["metadata"] as? Object)?["name"] as? String }

    static func dig(_ value: Any?, _ path: String...) -> Any? {
        var current = value
        for key in path { current = (current as? Object)?[key] }
        return current
    }

    static func list(_ value: Any?) -> [Object] { (value as? [Any])?.compactMap { $0 as? Object } ?? [] }

    static func int(_ value: Any?) -> Int? {
        if let i = value as? Int { return i }
        if let s = value as? String { return Int(s) }
        return nil
    }

    /// A probe's or Service's port (a number or a port name) as the container port number.
    static func resolve(port: Any?, in container: Object) -> Int? {
        if let number = self.int(port) { return number }
        guard let name = port as? String else { return nil }
        return self.int(self.list(container["ports"]).first { $0["name"] as? String == name }?["containerPort"])
    }

    /// haproxy.cfg without comments, blank lines and `server` lines (the addresses differ per environment).
    static func haproxyRules(_ config: String) -> [String] {
        config.split(separator: "\n").map { line -> String in
            let withoutComment = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return withoutComment.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty && !$0.hasPrefix("server ") }
    }

    /// (name, address, id) of each `server` line of `backend`.
    static func haproxyServers(_ config: String, backend: String) -> [(name: String, address: String, id: String?)] {
        var inBackend = false
        var out: [(String, String, String?)] = []
        for line in config.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = words.first else { continue }
            if !line.hasPrefix(" ") && !line.hasPrefix("\t") {
                inBackend = first == "backend" && words.count > 1 && words[1] == backend
            } else if inBackend, first == "server", words.count >= 3 {
                let id = words.firstIndex(of: "id").flatMap { $0 + 1 < words.count ? words[$0 + 1] : nil }
                out.append((words[1], words[2], id))
            }
        }
        return out
    }

    // MARK: - YAML everywhere

    @Test func everyYAMLFileParses() throws {
        let files = Self.yamlFiles()
        #expect(files.contains("kubernetes/wharf-statefulset.yaml"))
        #expect(files.contains("docker-compose.yml") && files.contains("docker-compose.cluster.yml"))
        for file in files {
            let documents = try Self.documents(file)
            #expect(!documents.isEmpty, "\(file) has no document")
        }
    }

    // MARK: - Kubernetes

    @Test func kubernetesDocumentsHaveIdentity() throws {
        let objects = try Self.kubernetesObjects()
        #expect(objects.count >= 9)
        for (file, object) in objects {
            #expect((object["apiVersion"] as? String)?.isEmpty == false, "\(file): a document without apiVersion")
            #expect((object["kind"] as? String)?.isEmpty == false, "\(file): a document without kind")
            #expect(Self.name(of: object)?.isEmpty == false, "\(file): \(object["kind"] ?? "?") without metadata.name")
            if let namespace = Self.dig(object, "metadata", "namespace") as? String {
                #expect(namespace == "wharf", "\(file): \(Self.name(of: object) ?? "?") in namespace \(namespace)")
            }
        }
        // The kustomization lists every manifest, and only existing files.
        let kustomization = try #require(Self.find(objects, kind: "Kustomization"))
        let resources = (kustomization["resources"] as? [String]) ?? []
        for resource in resources { #expect(Self.exists("kubernetes/" + resource), "kustomization names missing \(resource)") }
        let manifests = Set(Self.yamlFiles().filter { $0.hasPrefix("kubernetes/") && $0 != "kubernetes/kustomization.yaml" }.map { String($0.dropFirst("kubernetes/".count)) })
        #expect(Set(resources) == manifests)
        for kind in ["StatefulSet", "ConfigMap", "Secret", "Deployment", "Service", "Namespace"] {
            #expect(Self.find(objects, kind: kind) != nil, "no \(kind)")
        }
    }

    @Test func statefulSetProbesServicesAndStorage() throws {
        let objects = try Self.kubernetesObjects()
        let sts = try #require(Self.find(objects, kind: "StatefulSet", name: "wharf"))
        let spec = try #require(sts["spec"] as? Object)
        let podSpec = try #require(Self.dig(spec, "template", "spec") as? Object)
        let container = try #require(Self.list(podSpec["containers"]).first { $0["name"] as? String == "wharf" })
        let containerPort = try #require(Self.int(Self.list(container["ports"]).first?["containerPort"]))

        // One PersistentVolumeClaim per pod, mounted at the configured data directory.
        let claims = Self.list(spec["volumeClaimTemplates"])
        #expect(!claims.isEmpty, "no volumeClaimTemplates")
        let claimNames = Set(claims.compactMap { Self.name(of: $0) })
        let mounts = Self.list(container["volumeMounts"])
        let dataMount = try #require(mounts.first { claimNames.contains($0["name"] as? String ?? "") })
        #expect(Self.dig(claims.first, "spec", "resources", "requests", "storage") != nil)

        // Probes: liveness /healthz, readiness /readyz, on the container's port.
        #expect(Self.dig(container, "livenessProbe", "httpGet", "path") as? String == "/healthz")
        #expect(Self.dig(container, "readinessProbe", "httpGet", "path") as? String == "/readyz")
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] where container[probe] != nil {
            #expect(Self.resolve(port: Self.dig(container, probe, "httpGet", "port"), in: container) == containerPort, "\(probe) port")
        }

        // Prometheus scraping of /metrics on that port.
        let annotations = Self.dig(spec, "template", "metadata", "annotations") as? Object ?? [:]
        #expect(annotations["prometheus.io/scrape"] as? String == "true")
        #expect(annotations["prometheus.io/path"] as? String == "/metrics")
        #expect(Self.int(annotations["prometheus.io/port"]) == containerPort)

        // The headless Service named by serviceName, and a client Service, both targeting that port.
        let podLabels = Self.dig(spec, "template", "metadata", "labels") as? [String: String] ?? [:]
        #expect((Self.dig(spec, "selector", "matchLabels") as? [String: String]).map { $0.allSatisfy { podLabels[$0.key] == $0.value } } == true)
        let serviceName = try #require(spec["serviceName"] as? String)
        let headless = try #require(Self.find(objects, kind: "Service", name: serviceName))
        #expect(Self.dig(headless, "spec", "clusterIP") as? String == "None")
        let podServices = objects.map(\.object).filter { object in
            guard object["kind"] as? String == "Service", let selector = Self.dig(object, "spec", "selector") as? [String: String] else { return false }
            return selector.allSatisfy { podLabels[$0.key] == $0.value }
        }
        #expect(podServices.count >= 2, "a headless and a client Service")
        #expect(podServices.contains { Self.dig($0, "spec", "clusterIP") as? String != "None" }, "no client Service")
        for service in podServices {
            for port in Self.list(Self.dig(service, "spec", "ports")) {
                #expect(Self.resolve(port: port["targetPort"] ?? port["port"], in: container) == containerPort, "Service \(Self.name(of: service) ?? "?")")
            }
        }

        // The ConfigMap's wharf.yaml is a valid configuration that fits this pod.
        let configMount = try #require(mounts.first { $0["mountPath"] as? String == "/etc/wharf" })
        let configVolume = try #require(Self.list(podSpec["volumes"]).first { $0["name"] as? String == configMount["name"] as? String })
        let configMapName = try #require(Self.dig(configVolume, "configMap", "name") as? String)
        let configMap = try #require(Self.find(objects, kind: "ConfigMap", name: configMapName))
        let yaml = try #require(Self.dig(configMap, "data", "wharf.yaml") as? String)
        let config = try ConfigurationLoader.parse(yaml: yaml)
        let args = (container["args"] as? [String]) ?? []
        #expect(args.contains("/etc/wharf/wharf.yaml"))
        #expect(config.listeners.contains { $0.port == containerPort && $0.tls == nil })
        #expect(config.data.directory == dataMount["mountPath"] as? String)
        if let maxSize = config.data.maxSize {
            #expect(maxSize < 100 << 30, "max-size must stay below the 100Gi claim")
        }
    }

    @Test func credentialsFilesAreMountedFromTheSecret() throws {
        let objects = try Self.kubernetesObjects()
        let sts = try #require(Self.find(objects, kind: "StatefulSet", name: "wharf"))
        let podSpec = try #require(Self.dig(sts, "spec", "template", "spec") as? Object)
        let container = try #require(Self.list(podSpec["containers"]).first)
        let configMap = try #require(Self.find(objects, kind: "ConfigMap", name: "wharf-config"))
        let config = try ConfigurationLoader.parse(yaml: try #require(Self.dig(configMap, "data", "wharf.yaml") as? String))
        let files = config.upstreams.compactMap { upstream -> String? in
            if case .file(let path) = upstream.credentials { return path }
            return nil
        }
        #expect(!files.isEmpty, "the ConfigMap names no credentials file")
        for path in files {
            let mount = try #require(
                Self.list(container["volumeMounts"]).first { path.hasPrefix(($0["mountPath"] as? String ?? "\u{0}") + "/") },
                "no volume mounted above \(path)")
            let mountPath = mount["mountPath"] as! String
            let fileName = String(path.dropFirst(mountPath.count + 1))
            let volume = try #require(Self.list(podSpec["volumes"]).first { $0["name"] as? String == mount["name"] as? String })
            let secretName = try #require(Self.dig(volume, "secret", "secretName") as? String, "\(path) is not mounted from a Secret")
            let items = Self.list(Self.dig(volume, "secret", "items"))
            let key = items.isEmpty ? fileName : items.first { $0["path"] as? String == fileName }?["key"] as? String
            let secret = try #require(Self.find(objects, kind: "Secret", name: secretName))
            let keys = Set(((secret["stringData"] as? Object) ?? [:]).keys).union(((secret["data"] as? Object) ?? [:]).keys)
            #expect(key.map(keys.contains) == true, "\(path): key \(key ?? fileName) not in Secret \(secretName)")
            #expect(mount["readOnly"] as? Bool == true)
        }
    }

    @Test func haproxyOnKubernetesRunsTheShippedRulesOverTheStatefulSetPods() throws {
        let objects = try Self.kubernetesObjects()
        let configMap = try #require(Self.find(objects, kind: "ConfigMap", name: "wharf-haproxy"))
        let embedded = try #require(Self.dig(configMap, "data", "haproxy.cfg") as? String)
        let shipped = try Self.text("haproxy/haproxy.cfg")
        let embeddedRules = Self.haproxyRules(embedded), shippedRules = Self.haproxyRules(shipped)
        let drift = embeddedRules.difference(from: shippedRules).map { change -> String in
            switch change {
            case .insert(_, let line, _): return "+ \(line)"
            case .remove(_, let line, _): return "- \(line)"
            }
        }
        #expect(drift.isEmpty, "the ConfigMap's haproxy.cfg drifted from deploy/haproxy/haproxy.cfg (- shipped, + ConfigMap): \(drift)")
        for rule in ["balance hash var(txn.shard_key)", "hash-type consistent", "option httpchk GET /_ping"] {
            #expect(Self.haproxyRules(shipped).contains(rule), "\(rule)")
        }
        #expect(Self.haproxyRules(shipped).contains { $0.hasPrefix("default-server") && $0.contains("init-addr last,libc,none") })

        // One server per pod, by the pod's stable DNS name under the headless Service, ids 1…n.
        let sts = try #require(Self.find(objects, kind: "StatefulSet", name: "wharf"))
        let replicas = try #require(Self.int(Self.dig(sts, "spec", "replicas")))
        let serviceName = try #require(Self.dig(sts, "spec", "serviceName") as? String)
        let namespace = Self.dig(sts, "metadata", "namespace") as? String ?? "default"
        let container = try #require(Self.list(Self.dig(sts, "spec", "template", "spec", "containers")).first)
        let port = try #require(Self.int(Self.list(container["ports"]).first?["containerPort"]))
        let servers = Self.haproxyServers(embedded, backend: "wharf")
        #expect(servers.map(\.address) == (0..<replicas).map { "wharf-\($0).\(serviceName).\(namespace).svc.cluster.local:\(port)" })
        #expect(servers.map(\.id) == (1...replicas).map { String($0) })

        // The Deployment mounts that ConfigMap where the image reads it; the Service reaches its ports.
        let deployment = try #require(Self.find(objects, kind: "Deployment", name: "wharf-haproxy"))
        let podSpec = try #require(Self.dig(deployment, "spec", "template", "spec") as? Object)
        let haproxy = try #require(Self.list(podSpec["containers"]).first)
        #expect(Self.list(podSpec["volumes"]).contains { Self.dig($0, "configMap", "name") as? String == "wharf-haproxy" })
        #expect(Self.list(haproxy["volumeMounts"]).contains { $0["mountPath"] as? String == "/usr/local/etc/haproxy" })
        let service = try #require(Self.find(objects, kind: "Service", name: "wharf"))
        let labels = Self.dig(deployment, "spec", "template", "metadata", "labels") as? [String: String] ?? [:]
        #expect((Self.dig(service, "spec", "selector") as? [String: String])?.allSatisfy { labels[$0.key] == $0.value } == true)
        for servicePort in Self.list(Self.dig(service, "spec", "ports")) {
            #expect(Self.resolve(port: servicePort["targetPort"], in: haproxy) != nil, "Service wharf port \(servicePort["name"] ?? "?")")
        }
        for probe in ["livenessProbe", "readinessProbe"] {
            #expect(Self.resolve(port: Self.dig(haproxy, probe, "httpGet", "port"), in: haproxy) == 8404)
            #expect(Self.dig(haproxy, probe, "httpGet", "path") as? String == "/healthz")  // monitor-uri of frontend stats
        }
        #expect(shipped.contains("monitor-uri /healthz"))
    }

    // MARK: - Compose

    @Test func composeServicesReferenceExistingFiles() throws {
        for file in ["docker-compose.yml", "docker-compose.cluster.yml"] {
            let compose = try #require(try Self.documents(file).first as? Object)
            let services = try #require(compose["services"] as? Object, "\(file): no services")
            let namedVolumes = Set(((compose["volumes"] as? Object) ?? [:]).keys)
            for (name, value) in services {
                let service = try #require(value as? Object)
                #expect(service["image"] != nil || service["build"] != nil, "\(file): \(name) has neither image nor build")
                if let build = service["build"] as? Object {
                    let context = build["context"] as? String ?? "."
                    #expect(Self.exists(context), "\(file): \(name): build context \(context)")
                    if let dockerfile = build["dockerfile"] as? String {
                        #expect(Self.exists(context + "/" + dockerfile), "\(file): \(name): \(dockerfile)")
                    }
                }
                for volume in (service["volumes"] as? [String]) ?? [] {
                    let source = String(volume.split(separator: ":")[0])
                    if source.hasPrefix(".") || source.hasPrefix("/") {
                        #expect(Self.exists(source), "\(file): \(name) mounts missing \(source)")
                    } else {
                        #expect(namedVolumes.contains(source), "\(file): \(name) uses undeclared volume \(source)")
                    }
                    if volume.split(separator: ":").dropFirst().first == "/etc/wharf/wharf.yaml" {
                        _ = try ConfigurationLoader.load(path: Self.deploy.appendingPathComponent(source).standardizedFileURL.path)
                    }
                }
                for dependency in (service["depends_on"] as? [String]) ?? [] {
                    #expect(services[dependency] != nil, "\(file): \(name) depends on unknown \(dependency)")
                }
            }
        }
    }

    @Test func composeClusterMatchesTheHAProxyConfig() throws {
        let compose = try #require(try Self.documents("docker-compose.cluster.yml").first as? Object)
        let services = try #require(compose["services"] as? Object)
        let haproxy = try #require(services["haproxy"] as? Object)
        #expect(((haproxy["volumes"] as? [String]) ?? []).contains("./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"))
        let config = try ConfigurationLoader.load(path: Self.deploy.appendingPathComponent("docker/wharf.yaml").path)
        let servers = Self.haproxyServers(try Self.text("haproxy/haproxy.cfg"), backend: "wharf")
        #expect(servers.count == 3)
        var dataVolumes = Set<String>()
        for server in servers {
            let parts = server.address.split(separator: ":")
            let host = String(parts[0]), port = Int(parts[1])
            let service = try #require(services[host] as? Object, "haproxy server \(server.name) names no compose service \(host)")
            #expect(config.listeners.contains { $0.port == port }, "\(host) does not listen on \(port)")
            let volumes = (service["volumes"] as? [String]) ?? []
            let data = try #require(volumes.first { $0.hasSuffix(":/var/lib/wharf") })
            dataVolumes.insert(data)
        }
        #expect(dataVolumes.count == servers.count, "each node needs its own data volume")
    }

    // MARK: - Clients

    @Test func dockerDaemonJSONHasRegistryMirrors() throws {
        let data = try Data(contentsOf: Self.deploy.appendingPathComponent("clients/daemon.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let mirrors = try #require(object["registry-mirrors"] as? [String])
        #expect(!mirrors.isEmpty)
        for mirror in mirrors {
            let url = try #require(URL(string: mirror))
            #expect(url.scheme == "http" || url.scheme == "https")
            #expect(url.host != nil && url.query == nil && url.user == nil)
        }
        #expect(!Self.exists("daemon.json"), "deploy/daemon.json moved to deploy/clients/daemon.json")
    }

    @Test func containerdHostsFilesPointAtWharfAndTheRealRegistry() throws {
        let mirror = try #require(
            (try JSONSerialization.jsonObject(with: Data(contentsOf: Self.deploy.appendingPathComponent("clients/daemon.json"))) as? [String: Any])?["registry-mirrors"] as? [String])[0]
        let config = try ConfigurationLoader.load(path: Self.deploy.appendingPathComponent("docker/wharf.yaml").path)
        let expectedServers = ["docker.io": "https://registry-1.docker.io", "ghcr.io": "https://ghcr.io"]
        for (namespace, server) in expectedServers {
            let text = try Self.text("clients/containerd/certs.d/\(namespace)/hosts.toml")
            let active = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") }
            #expect(active.contains("server = \"\(server)\""), "\(namespace): server")
            #expect(active.contains("[host.\"\(mirror)\"]"), "\(namespace): no [host.\"\(mirror)\"]")
            #expect(active.contains { $0.hasPrefix("capabilities") && $0.contains("\"pull\"") && $0.contains("\"resolve\"") })
            // containerd sends ?ns=<namespace>: the shipped configuration must route it.
            #expect(config.upstreams.contains { $0.namespaces.contains(namespace) }, "no upstream for ns=\(namespace)")
        }
        let note = try Self.text("clients/containerd/certs.d/docker.io/hosts.toml")
        #expect(note.contains(#"[plugins."io.containerd.grpc.v1.cri".registry]"#) && note.contains(#"[plugins."io.containerd.cri.v1.images".registry]"#))
        #expect(note.contains(#"config_path = "/etc/containerd/certs.d""#))
    }

    @Test func registriesConfMirrorsUseWharfPathPrefixes() throws {
        let text = try Self.text("clients/registries.conf")
        let config = try ConfigurationLoader.load(path: Self.deploy.appendingPathComponent("docker/wharf.yaml").path)
        let prefixes = Set(config.upstreams.compactMap(\.pathPrefix))
        let locations = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("location = \"wharf.example:5000/") }
            .map { $0.dropFirst("location = \"wharf.example:5000/".count).dropLast() }
        #expect(Set(locations) == ["dockerhub", "ghcr"])
        for location in locations { #expect(prefixes.contains(String(location)), "no upstream with path-prefix \(location)") }
        #expect(text.contains("prefix = \"docker.io\"") && text.contains("prefix = \"ghcr.io\""))
    }

    // MARK: - Dockerfile, systemd

    @Test func dockerfileShape() throws {
        let text = try Self.text("Dockerfile")
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains { $0.hasPrefix("FROM swift:") && $0.contains("AS build") })
        #expect(lines.contains { $0.hasPrefix("FROM debian:") && $0.contains("-slim") })
        #expect(text.contains("swift build -c release --product wharf --static-swift-stdlib"))
        #expect(lines.contains("EXPOSE 5000"))
        #expect(lines.contains(#"VOLUME ["/var/lib/wharf"]"#))
        #expect(lines.contains { $0.hasPrefix("HEALTHCHECK") })
        #expect(lines.contains(#"ENTRYPOINT ["/usr/local/bin/wharf"]"#))
        #expect(lines.contains { $0.hasPrefix("USER ") && !$0.contains("root") })
        for package in ["liblmdb0", "libssl3", "zlib1g", "ca-certificates"] { #expect(text.contains(package), "\(package)") }
        // COPY sources exist (relative to the repository root, the build context).
        for line in lines where line.hasPrefix("COPY ") && !line.contains("--from=") {
            let words = line.split(separator: " ").dropFirst().filter { !$0.hasPrefix("--") }
            for source in words.dropLast() {
                #expect(FileManager.default.fileExists(atPath: Self.packageRoot.appendingPathComponent(String(source)).path), "COPY \(source)")
            }
        }
    }

    @Test func grafanaDashboardShape() throws {
        let data = try Data(contentsOf: Self.deploy.appendingPathComponent("grafana/wharf-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? Object)
        #expect(dashboard["uid"] as? String == "wharf-overview" && dashboard["title"] as? String == "Wharf")
        let panels = Self.list(dashboard["panels"])
        let ids = panels.compactMap { $0["id"] as? Int }
        #expect(ids.count == panels.count && Set(ids).count == ids.count, "every panel has its own id")
        let variables = Self.list(Self.dig(dashboard, "templating", "list")).compactMap { $0["name"] as? String }
        #expect(variables == ["datasource", "instance"])
        let queries = panels.filter { $0["type"] as? String != "row" }
        #expect(queries.count >= 20)
        for panel in queries {
            let targets = Self.list(panel["targets"])
            #expect(!targets.isEmpty, "\(panel["title"] ?? "?") has no query")
            #expect(Self.dig(panel, "datasource", "uid") as? String == "${datasource}")
            for target in targets {
                let expr = target["expr"] as? String ?? ""
                // Each query names a Wharf or process metric and keeps to the selected instances
                // (MetricsAgreementTests checks the names against what /metrics exports).
                #expect(expr.contains("wharf_") || expr.contains("process_"), "\(expr)")
                #expect(expr.contains(#"instance=~"$instance""#), "\(expr)")
            }
        }
    }

    @Test func systemdUnitIsHardened() throws {
        let text = try Self.text("systemd/wharf.service")
        let directives = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") })
        for directive in [
            "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/wharf",
            "LimitNOFILE=1048576", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
            "ExecStart=/usr/local/bin/wharf serve --config /etc/wharf/wharf.yaml", "Type=notify", "NotifyAccess=main", "WatchdogSec=30s",
        ] {
            #expect(directives.contains(directive), "\(directive)")
        }
        #expect(directives.contains { $0.hasPrefix("User=") } || directives.contains("DynamicUser=yes"))
    }
}
