#[cfg(test)]
mod cases {
    //! One case per editor and converter with its exact output, the Collector's documented
    //! examples among them, run through the parser and a writable log record or span.

    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use serde_json::{Value as J, json};

    use crate::ottl::mutate::{Env, LogMut, SpanMut};
    use crate::ottl::{Context, Statement};

    /// An attribute value from JSON (numbers with a fraction are doubles).
    fn any(j: &J) -> AnyValue {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        AnyValue {
            value: match j {
                J::Null => None,
                J::Bool(b) => Some(V::BoolValue(*b)),
                J::Number(n) if n.is_i64() => Some(V::IntValue(n.as_i64().unwrap_or(0))),
                J::Number(n) => Some(V::DoubleValue(n.as_f64().unwrap_or(0.0))),
                J::String(s) => Some(V::StringValue(s.clone())),
                J::Array(a) => Some(V::ArrayValue(ArrayValue {
                    values: a.iter().map(any).collect(),
                })),
                J::Object(o) => Some(V::KvlistValue(KeyValueList { values: kvs(o) })),
            },
        }
    }

    fn kvs(o: &serde_json::Map<String, J>) -> Vec<KeyValue> {
        o.iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: Some(any(v)),
                ..Default::default()
            })
            .collect()
    }

    fn to_json(kvs: &[KeyValue]) -> J {
        J::Object(
            kvs.iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .map_or(J::Null, crate::signal::value::to_json),
                    )
                })
                .collect(),
        )
    }

    fn attrs() -> J {
        json!({
            "str": "hello",
            "int": 42,
            "float": 1.5,
            "bool": true,
            "map": {"a": "b", "n": 1},
            "list": ["x", "y"],
            "tags": ["prod", "staging"],
            "empty": "",
            "kv": "k1=v1 k2=v2 k3=v3",
            "json": "{\"attr\":true,\"n\":2}",
            "path": "/user/123/list/456",
            "ua": "curl/7.81.0",
            "ip": "192.168.3.4",
            "card": "4432-8015-6152-0454",
        })
    }

    struct Out {
        attrs: J,
        body: J,
        resource: J,
        log: LogRecord,
    }

    /// Runs statements in the log context on a record with [`attrs`] and a string body.
    fn run_log(stmts: &[&str]) -> Result<Out, String> {
        let J::Object(a) = attrs() else {
            unreachable!()
        };
        let mut log = LogRecord {
            attributes: kvs(&a),
            body: Some(any(&json!("k1=v1 k2=v2"))),
            severity_text: "INFO".into(),
            ..Default::default()
        };
        let mut resource = Some(Resource {
            attributes: kvs(json!({"service.name": "checkout", "host.name": "h1"})
                .as_object()
                .unwrap()),
            ..Default::default()
        });
        let mut scope = None;
        let mut cache = Vec::new();
        let parsed: Vec<Statement> = stmts
            .iter()
            .map(|s| Statement::parse(s, Context::Log).map_err(|e| format!("{s}: {e}")))
            .collect::<Result<_, _>>()?;
        {
            let mut item = LogMut {
                env: Env {
                    resource: &mut resource,
                    scope: Some(&mut scope),
                    cache: &mut cache,
                },
                log: &mut log,
            };
            for st in &parsed {
                st.exec(&mut item).map_err(|e| e.0)?;
            }
        }
        Ok(Out {
            attrs: to_json(&log.attributes),
            body: log
                .body
                .as_ref()
                .map_or(J::Null, crate::signal::value::to_json),
            resource: to_json(&resource.unwrap_or_default().attributes),
            log,
        })
    }

    /// The value a converter expression gives, as JSON.
    fn conv(expr: &str) -> Result<J, String> {
        let out = run_log(&[&format!("set(attributes[\"out\"], {expr})")])?;
        Ok(out.attrs.get("out").cloned().unwrap_or(J::Null))
    }

    #[track_caller]
    fn check(expr: &str, want: J) {
        match conv(expr) {
            Ok(got) => assert_eq!(got, want, "{expr}"),
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    #[track_caller]
    fn fails(expr: &str, contains: &str) {
        match conv(expr) {
            Ok(v) => panic!("{expr}: expected an error, got {v}"),
            Err(e) => assert!(e.contains(contains), "{expr}: {e}"),
        }
    }

    #[test]
    fn type_converters() {
        check(r#"Bool("true")"#, json!(true));
        check(r#"Bool("0")"#, json!(false));
        check("Bool(1)", json!(true));
        check("Bool(0.0)", json!(false));
        check(r#"Bool("maybe")"#, J::Null);
        check(r#"Int("2.0")"#, J::Null);
        check(r#"Int("42")"#, json!(42));
        check("Int(-1.9)", json!(-1));
        check("Int(true)", json!(1));
        check(r#"Double("2.5")"#, json!(2.5));
        check(r#"Double(attributes["int"])"#, json!(42.0));
        check(r#"String(attributes["int"])"#, json!("42"));
        check(
            r#"String(attributes["map"])"#,
            json!("{\"a\":\"b\",\"n\":1}"),
        );
        check("String([1,2,3])", json!("[1,2,3]"));
        check("String(false)", json!("false"));
        check("String(0x0102)", json!("0102"));
        check(r#"IsBool(attributes["bool"])"#, json!(true));
        check("IsBool(42)", json!(false));
        check(r#"IsDouble(attributes["float"])"#, json!(true));
        check(r#"IsInt(attributes["int"])"#, json!(true));
        check(r#"IsString(attributes["str"])"#, json!(true));
        check(r#"IsString(attributes["int"])"#, json!(false));
        check(r#"IsMap(attributes["map"])"#, json!(true));
        check(r#"IsList(attributes["list"])"#, json!(true));
        check(r#"IsEmpty(attributes["empty"])"#, json!(true));
        check(r#"IsEmpty(attributes["missing"])"#, json!(true));
        check(r#"IsEmpty(attributes["str"])"#, json!(false));
        check(r#"IsEmpty({})"#, json!(true));
        check(r#"IsMatch(attributes["str"], "^hel+o$")"#, json!(true));
        check(r#"IsMatch("string", ".*ring")"#, json!(true));
        check(r#"IsMatch(attributes["int"], "^4")"#, json!(true));
        check(r#"IsMatch(attributes["missing"], ".*")"#, json!(false));
        check(r#"Len(attributes["str"])"#, json!(5));
        check(r#"Len(attributes["list"])"#, json!(2));
        check(r#"Len(attributes["map"])"#, json!(2));
        fails(r#"Len(attributes["int"])"#, "Len: unsupported type int");
    }

    #[test]
    fn string_converters() {
        check(
            r#"Concat([attributes["str"], "world", 1], " ")"#,
            json!("hello world 1"),
        );
        check(
            r#"Concat(["a", attributes["map"], "b"], "-")"#,
            json!("a-b"),
        );
        check(r#"Split("a,b,,c", ",")"#, json!(["a", "b", "", "c"]));
        check(r#"Split(attributes["kv"], " ")[1]"#, json!("k2=v2"));
        check(r#"Substring("123456789", 0, 3)"#, json!("123"));
        check(r#"Substring("一二三", 0, 4, true)"#, json!("一"));
        fails(r#"Substring("abc", 2, 5)"#, "out of range");
        check(r#"ToLowerCase("MyMetricName")"#, json!("mymetricname"));
        check(r#"ToUpperCase("MyMetricName")"#, json!("MYMETRICNAME"));
        check(r#"ToSnakeCase("MyMetricName")"#, json!("my_metric_name"));
        check(r#"ToCamelCase("my_metric_name")"#, json!("MyMetricName"));
        check(r#"ConvertCase("myMetric", "snake")"#, json!("my_metric"));
        check(r#"ConvertCase("my_metric", "camel")"#, json!("MyMetric"));
        check(r#"ConvertCase("My_Metric", "upper")"#, json!("MY_METRIC"));
        check(r#"Trim(" this is a test ", " ")"#, json!("this is a test"));
        check(
            r#"Trim("!!this is a test!!", "!!")"#,
            json!("this is a test"),
        );
        check(r#"Trim("  x  ")"#, json!("x"));
        check(
            r#"TrimPrefix("ingest_service", "ingest_")"#,
            json!("service"),
        );
        check(
            r#"TrimSuffix("ingest_service", "_service")"#,
            json!("ingest"),
        );
        check(r#"HasPrefix("ingest_service", "ingest_")"#, json!(true));
        check(r#"HasSuffix("ingest_service", "_x")"#, json!(false));
        check(r#"Index("hello world", "world")"#, json!(6));
        check(r#"Index(attributes["tags"], "staging")"#, json!(1));
        check(r#"Index(attributes["tags"], "dev")"#, json!(-1));
        check(r#"Format("%02d", [7])"#, json!("07"));
        check(
            r#"Format("%s/%s/%04d-%02d-%02d.log", ["host", attributes["str"], 2024, 3, 9])"#,
            json!("host/hello/2024-03-09.log"),
        );
        check(
            r#"Format("%.2f|%5s|%-4d|%x", [3.14159, "ab", 7, 255])"#,
            json!("3.14|   ab|7   |ff"),
        );
        check(r#"Format("%d%%", [50])"#, json!("50%"));
        check(r#"Hex(attributes["int"])"#, json!("000000000000002a"));
        check(r#"Hex("1")"#, json!("31"));
        check("Hex(true)", json!("01"));
        check("Hex(1.1)", json!("3ff199999999999a"));
        check(r#"Base64Encode("test string")"#, json!("dGVzdCBzdHJpbmc="));
        check(
            r#"Base64Encode("test string", "base64-raw")"#,
            json!("dGVzdCBzdHJpbmc"),
        );
        check(r#"Base64Decode("aGVsbG8gd29ybGQ=")"#, json!("hello world"));
        check(
            r#"Decode("aGVsbG8gd29ybGQ=", "base64")"#,
            json!("hello world"),
        );
        check(r#"Decode(0x63616665, "us-ascii")"#, json!("cafe"));
        check(r#"Decode(0xe9, "iso-8859-1")"#, json!("é"));
        fails(r#"Decode("x", "no-such")"#, "unknown encoding");
    }

    #[test]
    fn hashes() {
        check(
            r#"SHA256("name")"#,
            json!("82a3537ff0dbce7eec35d69edc3a189ee6f17d82f353a553f9aa96cb0be3ce89"),
        );
        check(
            r#"SHA1("name")"#,
            json!("6ae999552a0d2dca14d62e2bc8b764d377b1dd6c"),
        );
        check(
            r#"SHA512("name")"#,
            json!(
                "b114f311db0e009ca2a88a9b97b1d7b362ddb27dc3dd214c6d20327a1fc3add8cc488cca4cc3565a876f6040f8b73a7b92475be1d0b1bc453f6140fba7183b9a"
            ),
        );
        check(r#"MD5("name")"#, json!("b068931cc450442b63f5b3d276ea4297"));
        check(r#"FNV("name")"#, json!(-4270347329889690746i64));
        // Expected values computed with the `mmh3` and `xxhash` PyPI packages.
        check(r#"Murmur3Hash("hello")"#, json!("47fa8b24"));
        check(r#"Murmur3Hash("a much longer string")"#, json!("28e81ac4"));
        check(
            r#"Murmur3Hash128("hello")"#,
            json!("029bbd41b3a7d8cb191dae486a901e5b"),
        );
        check(
            r#"Murmur3Hash128("a much longer string than sixteen bytes")"#,
            json!("4108f31a760165ab15d2d75ebc01ccaf"),
        );
        check(r#"XXH3("name")"#, json!("0c354ecdc24a77d5"));
        check(
            r#"XXH128("name")"#,
            json!("c96a918390b153ff53816205aaaa5e4a"),
        );
        fails("SHA256(1)", "must be a string");
        // The Community ID specification's own example flow, and the Collector's example.
        check(
            r#"CommunityID("128.232.110.120", 34855, "66.35.250.204", 80)"#,
            json!("1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        );
        check(
            r#"CommunityID("192.168.1.1", 54321, "10.0.0.1", 90, "UDP", 2)"#,
            json!("1:sAf4Y22Cz0Pq28qyrJYFQGhlvp4="),
        );
        check(r#"IsValidLuhn("17893729974")"#, json!(true));
        check(r#"IsValidLuhn("17893729975")"#, json!(false));
        check("IsValidLuhn(79927398713)", json!(true));
    }

    #[test]
    fn parsers() {
        check(r#"ParseJSON("{\"attr\":true}")"#, json!({"attr": true}));
        check(
            r#"ParseJSON("[\"attr1\",\"attr2\"]")"#,
            json!(["attr1", "attr2"]),
        );
        check(r#"ParseJSON(attributes["json"])["n"]"#, json!(2.0));
        fails(r#"ParseJSON("{oops")"#, "ParseJSON");
        check(
            r#"ParseKeyValue("k1=v1 k2=v2 k3=v3")"#,
            json!({"k1": "v1", "k2": "v2", "k3": "v3"}),
        );
        check(
            r#"ParseKeyValue("k1!v1_k2!v2_k3!v3", "!", "_")"#,
            json!({"k1": "v1", "k2": "v2", "k3": "v3"}),
        );
        check(
            r#"ParseKeyValue("a=1 msg=\"hello world\" a=2")"#,
            json!({"a": ["1", "2"], "msg": "hello world"}),
        );
        check(
            r#"ParseCSV("999-999-9999,Joe Smith,joe.smith@example.com", "phone,name,email")"#,
            json!({"phone": "999-999-9999", "name": "Joe Smith", "email": "joe.smith@example.com"}),
        );
        check(
            r#"ParseCSV("a|\"b|c\"", "x|y", delimiter="|")"#,
            json!({"x": "a", "y": "b|c"}),
        );
        check(
            r#"ParseCSV("\"555-555-5556,Joe Smith\",joe.smith@example.com", "phone,name,email", mode="ignoreQuotes")"#,
            json!({"phone": "\"555-555-5556", "name": "Joe Smith\"", "email": "joe.smith@example.com"}),
        );
        fails(r#"ParseCSV("a,b", "x")"#, "1 headers but 2 fields");
        let mapping = r#"{"info":[{"equals": ["inf", "information"]}, {"range":{"min":200, "max":299}}], "error":[{"range":"5xx"}, {"equals": ["err"]}]}"#;
        check(
            &format!(r#"ParseSeverity("inf", {mapping})"#),
            json!("info"),
        );
        check(&format!(r#"ParseSeverity(204, {mapping})"#), json!("info"));
        check(
            &format!(r#"ParseSeverity("503", {mapping})"#),
            json!("error"),
        );
        check(
            &format!(r#"ParseSeverity("err", {mapping})"#),
            json!("error"),
        );
        fails(
            &format!(r#"ParseSeverity("debug", {mapping})"#),
            "no severity level matches",
        );
        check(r#"ParseInt("0b1111_0000", 0)"#, json!(240));
        check(r#"ParseInt("-0xFF", 0)"#, json!(-255));
        check(r#"ParseInt("-0o123", 0)"#, json!(-83));
        check(r#"ParseInt("AA", 16)"#, json!(170));
        check(r#"ParseInt("-20", 8)"#, json!(-16));
        fails(r#"ParseInt("notANumber", 10)"#, "cannot parse");
        check(
            r#"ExtractPatterns("GIT_SHA=abc123 rest", "GIT_SHA=(?P<git.sha>\\w+)")"#,
            json!({"git.sha": "abc123"}),
        );
        check(r#"ExtractPatterns("nothing", "x=(?P<x>\\w+)")"#, json!({}));
        check(
            r#"ExtractGrokPatterns("smith:pass123:1001:1000:J Smith,1234:/home/smith:/bin/sh", "%{USERNAME:user.name}:%{PASSWORD:user.password}:%{USERINFO}", true, ["PASSWORD=%{WORD}", "USERINFO=%{GREEDYDATA}"])"#,
            json!({"user.name": "smith", "user.password": "pass123"}),
        );
        check(
            r#"ExtractGrokPatterns("55.3.244.1 GET /index.html 15824 0.043", "%{IP:client} %{WORD:method} %{URIPATHPARAM:request} %{NUMBER:bytes:int} %{NUMBER:duration:float}", true)"#,
            json!({"client": "55.3.244.1", "method": "GET", "request": "/index.html", "bytes": 15824, "duration": 0.043}),
        );
        check(
            r#"ExtractGrokPatterns("2024-01-02T03:04:05Z INFO started", "%{TIMESTAMP_ISO8601:ts} %{LOGLEVEL:level} %{GREEDYDATA:msg}")"#,
            json!({"ts": "2024-01-02T03:04:05Z", "level": "INFO", "msg": "started"}),
        );
        check(
            r#"ParseSimplifiedXML("<event><id>1</id><user>jane</user><details><time>2021-10-01T12:00:00Z</time><cause>unknown</cause></details></event>")"#,
            json!({"event": {"id": "1", "user": "jane", "details": {"time": "2021-10-01T12:00:00Z", "cause": "unknown"}}}),
        );
        check(
            r#"ParseSimplifiedXML("<a><b>1</b><b><![CDATA[2]]></b><c/></a>")"#,
            json!({"a": {"b": ["1", "2"]}}),
        );
        check(
            r#"ParseSimplifiedXML("<a> <b>1</b> <b/> </a>")"#,
            json!({"a": {"b": ["1"]}}),
        );
        check(
            r#"ParseXML("<?xml version=\"1.0\"?><Log><User><ID>00001</ID><Name type=\"first\">Joe</Name></User><Text>User fired alert A</Text></Log>")"#,
            json!({"tag": "Log", "children": [
                {"tag": "User", "children": [
                    {"tag": "ID", "content": "00001"},
                    {"tag": "Name", "content": "Joe", "attributes": {"type": "first"}}
                ]},
                {"tag": "Text", "content": "User fired alert A"}
            ]}),
        );
        fails(r#"ParseXML("<a><b></a>")"#, "closes");
        check(
            r#"URL("http://myusername:mypassword@www.example.com:80/foo.gif?key1=val1&key2=val2#fragment")"#,
            json!({
                "url.path": "/foo.gif", "url.fragment": "fragment", "url.extension": "gif",
                "url.password": "mypassword",
                "url.original": "http://myusername:mypassword@www.example.com:80/foo.gif?key1=val1&key2=val2#fragment",
                "url.scheme": "http", "url.port": 80, "url.user_info": "myusername:mypassword",
                "url.domain": "www.example.com", "url.query": "key1=val1&key2=val2",
                "url.username": "myusername"
            }),
        );
        check(
            r#"URL("http://www.example.com")"#,
            json!({"url.original": "http://www.example.com", "url.scheme": "http", "url.domain": "www.example.com", "url.path": ""}),
        );
        check(
            r#"UserAgent("curl/7.81.0")"#,
            json!({"user_agent.name": "curl", "user_agent.version": "7.81.0", "user_agent.original": "curl/7.81.0", "os.name": "Other"}),
        );
        check(
            r#"UserAgent("Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0")["user_agent.name"]"#,
            json!("Firefox"),
        );
        check(
            r#"UserAgent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36 Edg/91.0.864.59")"#,
            json!({"user_agent.name": "Edge", "user_agent.version": "91.0.864",
                   "user_agent.original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36 Edg/91.0.864.59",
                   "os.name": "Windows", "os.version": "10"}),
        );
    }

    #[test]
    fn collections() {
        check(r#"Keys({"k1":"v1", "k2": "v2"})"#, json!(["k1", "k2"]));
        check(
            r#"Values({"key1": "value1", "key2": 5})"#,
            json!(["value1", 5]),
        );
        check(
            r#"ContainsValue(attributes["tags"], "staging")"#,
            json!(true),
        );
        check("ContainsValue([1, 2, 3, 4, 5], 3)", json!(true));
        check("ContainsValue([1.1, 2.2, 3.3, 4.4], 4.4)", json!(true));
        check(
            r#"ContainsValue(["GET", "PUT", "POST"], "DELETE")"#,
            json!(false),
        );
        check(
            r#"Coalesce([attributes["missing"], attributes["str"], "unknown"])"#,
            json!("hello"),
        );
        check(r#"Coalesce([attributes["missing"]])"#, J::Null);
        check("Sort([3, 1, 2])", json!([1, 2, 3]));
        check(r#"Sort(["b", "a", "c"], "desc")"#, json!(["c", "b", "a"]));
        check("Sort([2, 1.5, 3])", json!([1.5, 2, 3]));
        check(
            r#"SliceToMap([{"name": "foo", "value": 2}, {"name": "bar", "value": 5}], ["name"], ["value"])"#,
            json!({"foo": 2, "bar": 5}),
        );
        check(
            r#"SliceToMap([{"name": "foo"}, {"name": "bar"}])"#,
            json!({"0": {"name": "foo"}, "1": {"name": "bar"}}),
        );
        check(
            r#"IsInCIDR(attributes["ip"], ["192.168.0.0/16", "10.0.0.0/8"])"#,
            json!(true),
        );
        check(
            r#"IsInCIDR("172.16.0.1", ["192.168.0.0/16"])"#,
            json!(false),
        );
        check(r#"IsInCIDR("2001:db8::1", ["2001:db8::/32"])"#, json!(true));
        check(
            r#"ToKeyValueString({"k1": "v1", "k2": "v=2"}, "=", " ", true)"#,
            json!("k1=v1 k2=\"v=2\""),
        );
        check(r#"Log(100)"#, json!(100f64.ln()));
        fails("Log(0)", "<= 0");
        check("1 + 2 * 3", json!(7));
        check("(1 + 2) * 3", json!(9));
        check("10 / 4", json!(2));
        check("10.0 / 4", json!(2.5));
        check(r#"Len(attributes["list"]) - 1"#, json!(1));
        fails("1 / 0", "division by zero");
    }

    #[test]
    fn times_and_ids() {
        check(
            r#"UnixSeconds(Time("02/04/2023", "%m/%d/%Y"))"#,
            json!(1675468800),
        );
        check(
            r#"UnixMilli(Time("2023-05-26 12:34:56", "%Y-%m-%d %H:%M:%S", "America/New_York"))"#,
            json!(1685118896000i64),
        );
        check(
            r#"UnixSeconds(Time("2012-11-01T22:08:41+0000", "%Y-%m-%dT%H:%M:%S%z"))"#,
            json!(1351807721),
        );
        check(
            r#"UnixNano(Unix(1672527600, 5))"#,
            json!(1672527600000000005i64),
        );
        check(r#"UnixMicro(Unix(1672527600))"#, json!(1672527600000000i64));
        check(
            r#"FormatTime(Time("02/04/2023", "%m/%d/%Y"), "%A %b %d %Y")"#,
            json!("Saturday Feb 04 2023"),
        );
        check(r#"Year(Unix(1672527600))"#, json!(2022));
        check(r#"Month(Unix(1672527600))"#, json!(12));
        check(r#"Day(Unix(1672527600))"#, json!(31));
        check(r#"Hour(Unix(1672527600))"#, json!(23));
        check(r#"Minute(Unix(1672527660))"#, json!(1));
        check(r#"Second(Unix(1672527605))"#, json!(5));
        check(r#"Nanosecond(Unix(1672527600, 7))"#, json!(7));
        check(r#"Weekday(Unix(1672527600))"#, json!(6));
        check(r#"Nanoseconds(Duration("333ms"))"#, json!(333_000_000));
        check(r#"Milliseconds(Duration("1h"))"#, json!(3_600_000));
        check(r#"Microseconds(Duration("1.5s"))"#, json!(1_500_000));
        check(r#"Seconds(Duration("1m30s"))"#, json!(90.0));
        check(r#"Minutes(Duration("1h"))"#, json!(60.0));
        check(r#"Hours(Duration("90m"))"#, json!(1.5));
        fails(r#"Duration("3 parsecs")"#, "invalid duration");
        check(
            r#"UnixSeconds(TruncateTime(Unix(1672527605), Duration("10s")))"#,
            json!(1672527600),
        );
        check(
            r#"Seconds(Unix(1672527605) - Unix(1672527600))"#,
            json!(5.0),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let got = conv("UnixSeconds(Now())").unwrap().as_i64().unwrap();
        assert!((got - now).abs() <= 2, "Now() = {got}, clock {now}");
        check(
            r#"TraceID("a389023abaa839283293ed323892389d")"#,
            json!("o4kCOrqoOSgyk+0yOJI4nQ=="),
        );
        check("SpanID(0x0102030405060708)", json!("AQIDBAUGBwg="));
        check(
            "ProfileID(0x00112233445566778899aabbccddeeff)",
            json!("ABEiM0RVZneImaq7zN3u/w=="),
        );
        fails(r#"SpanID("0102")"#, "expected 8 bytes");
        let u = conv("UUID()").unwrap();
        let u = u.as_str().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "{u}");
        let u7 = conv("UUIDv7()").unwrap();
        let u7 = u7.as_str().unwrap();
        assert_eq!(&u7[14..15], "7", "{u7}");
        assert_ne!(conv("UUID()").unwrap(), conv("UUID()").unwrap());
    }

    #[test]
    fn set_and_paths() {
        let o = run_log(&[
            r#"set(attributes["new"], "v")"#,
            r#"set(attributes["map"]["a"], "c")"#,
            r#"set(attributes["deep"]["x"]["y"], 1)"#,
            r#"set(attributes["list"][0], "z")"#,
            r#"set(attributes["nil"], attributes["missing"])"#,
            r#"set(severity_text, "WARN")"#,
            "set(severity_number, SEVERITY_NUMBER_WARN)",
            r#"set(body, ParseKeyValue(body))"#,
            r#"set(resource.attributes["env"], "prod")"#,
            r#"set(cache["x"], attributes["str"])"#,
            r#"set(attributes["from_cache"], cache["x"])"#,
            r#"set(log.attributes["prefixed"], log.severity_text)"#,
            r#"set(trace_id, TraceID("a389023abaa839283293ed323892389d"))"#,
            r#"set(attributes["sum"], attributes["int"] + 8)"#,
        ])
        .unwrap();
        assert_eq!(o.attrs["new"], json!("v"));
        assert_eq!(o.attrs["map"], json!({"a": "c", "n": 1}));
        assert_eq!(o.attrs["deep"], json!({"x": {"y": 1}}));
        assert_eq!(o.attrs["list"], json!(["z", "y"]));
        assert!(o.attrs.get("nil").is_none(), "set to nil does nothing");
        assert_eq!(o.log.severity_text, "WARN");
        assert_eq!(o.log.severity_number, 13);
        assert_eq!(o.body, json!({"k1": "v1", "k2": "v2"}));
        assert_eq!(o.resource["env"], json!("prod"));
        assert_eq!(o.attrs["from_cache"], json!("hello"));
        assert_eq!(o.attrs["prefixed"], json!("WARN"));
        assert_eq!(
            hex::encode(&o.log.trace_id),
            "a389023abaa839283293ed323892389d"
        );
        assert_eq!(o.attrs["sum"], json!(50));
        // Wrong types are errors, with what was expected.
        let e = run_log(&[r#"set(severity_number, "high")"#]).err().unwrap();
        assert!(e.contains("takes an int"), "{e}");
        let e = run_log(&[r#"set(attributes["list"][5], 1)"#])
            .err()
            .unwrap();
        assert!(e.contains("out of range"), "{e}");
        let e = run_log(&["set(trace_id, 0x01)"]).err().unwrap();
        assert!(e.contains("16 bytes"), "{e}");
    }

    #[test]
    fn map_editors() {
        let o = run_log(&[
            r#"delete_key(attributes, "str")"#,
            r#"delete_key(attributes, "nothing")"#,
            r#"delete_matching_keys(attributes, "^(int|float)$")"#,
            r#"delete_key(resource.attributes, "host.name")"#,
        ])
        .unwrap();
        assert!(
            o.attrs.get("str").is_none()
                && o.attrs.get("int").is_none()
                && o.attrs.get("float").is_none()
        );
        assert_eq!(o.attrs["bool"], json!(true));
        assert_eq!(o.resource, json!({"service.name": "checkout"}));

        let o = run_log(&[r#"keep_keys(attributes, ["str", "int"])"#]).unwrap();
        assert_eq!(o.attrs, json!({"str": "hello", "int": 42}));
        let o = run_log(&[r#"keep_matching_keys(attributes, "^(?i)STR|bool$")"#]).unwrap();
        assert_eq!(o.attrs, json!({"str": "hello", "bool": true}));
        let o = run_log(&[r#"limit(attributes, 2, ["card"])"#]).unwrap();
        assert_eq!(
            o.attrs,
            json!({"bool": true, "card": "4432-8015-6152-0454"})
        );
        let o = run_log(&[r#"merge_maps(attributes, ParseJSON(attributes["json"]), "upsert")"#])
            .unwrap();
        assert_eq!(
            (o.attrs["attr"].clone(), o.attrs["n"].clone()),
            (json!(true), json!(2.0))
        );
        let o = run_log(&[r#"merge_maps(attributes, {"str": "x", "new": 1}, "insert")"#]).unwrap();
        assert_eq!(
            (o.attrs["str"].clone(), o.attrs["new"].clone()),
            (json!("hello"), json!(1))
        );
        let o = run_log(&[r#"merge_maps(attributes, {"str": "x", "new": 1}, "update")"#]).unwrap();
        assert_eq!(o.attrs["str"], json!("x"));
        assert!(o.attrs.get("new").is_none());
        let o = run_log(&[r#"merge_maps(attributes, resource.attributes, "insert")"#]).unwrap();
        assert_eq!(o.attrs["service.name"], json!("checkout"));
        let o = run_log(&[r#"truncate_all(attributes, 3)"#]).unwrap();
        assert_eq!(
            (
                o.attrs["str"].clone(),
                o.attrs["card"].clone(),
                o.attrs["int"].clone()
            ),
            (json!("hel"), json!("443"), json!(42))
        );
        let o = run_log(&[r#"truncate_all(attributes, 4, truncation_marker = "…")"#]).unwrap();
        assert_eq!(o.attrs["str"], json!("h…"));
        let o = run_log(&[
            r#"set(attributes["u"], "ab一")"#,
            "truncate_all(attributes, 4)",
        ])
        .unwrap();
        assert_eq!(o.attrs["u"], json!("ab"), "cut at a character boundary");
        let o = run_log(&["stringify_all(attributes)"]).unwrap();
        assert_eq!(
            (
                o.attrs["int"].clone(),
                o.attrs["bool"].clone(),
                o.attrs["list"].clone()
            ),
            (json!("42"), json!("true"), json!("[\"x\",\"y\"]"))
        );
        assert_eq!(o.attrs["map"], json!("{\"a\":\"b\",\"n\":1}"));
    }

    #[test]
    fn flatten_as_documented() {
        let run = |stmt: &str, input: J| {
            let text = format!(
                "set(attributes[\"in\"], ParseJSON({:?}))",
                input.to_string()
            );
            let o = run_log(&[&text, stmt]).unwrap();
            o.attrs["in"].clone()
        };
        let doc = json!({"name": "test", "address": {"street": "first", "house": 1234}, "occupants": ["user 1", "user 2"]});
        assert_eq!(
            run(r#"flatten(attributes["in"])"#, doc.clone()),
            json!({"name": "test", "address.street": "first", "address.house": 1234.0, "occupants.0": "user 1", "occupants.1": "user 2"})
        );
        assert_eq!(
            run(r#"flatten(attributes["in"], "app")"#, doc),
            json!({"app.name": "test", "app.address.street": "first", "app.address.house": 1234.0, "app.occupants.0": "user 1", "app.occupants.1": "user 2"})
        );
        assert_eq!(
            run(
                r#"flatten(attributes["in"], depth=2)"#,
                json!({"0": {"1": {"2": {"3": {"4": "value"}}}}})
            ),
            json!({"0.1.2": {"3": {"4": "value"}}})
        );
        assert_eq!(
            run(
                r#"flatten(attributes["in"], resolveConflicts=true)"#,
                json!({"a": {"b": 1}, "a.b": 2, "occupants": ["user 1", "user 2"]})
            ),
            json!({"a.b": 1.0, "a.b.0": 2.0, "occupants": "user 1", "occupants.0": "user 2"})
        );
    }

    #[test]
    fn replace_editors() {
        // The Collector's examples.
        let o = run_log(&[
            r#"replace_pattern(attributes["card"], "^\\d{4}-\\d{4}-\\d{4}-", "****-****-****-")"#,
            r#"replace_match(attributes["path"], "/user/*/list/*", "/user/{userId}/list/{listId}")"#,
            r#"replace_pattern(attributes["kv"], "k(\\d)=", "key$1:")"#,
        ])
        .unwrap();
        assert_eq!(o.attrs["card"], json!("****-****-****-0454"));
        assert_eq!(o.attrs["path"], json!("/user/{userId}/list/{listId}"));
        assert_eq!(o.attrs["kv"], json!("key1:v1 key2:v2 key3:v3"));
        let o = run_log(&[
            r#"replace_pattern(attributes["str"], "^(hel)", "$1", SHA256, "h:%s")"#,
            r#"replace_match(attributes["path"], "/user/*/list/*", "x", SHA1, "/user/%s")"#,
        ])
        .unwrap();
        let sha = |b: &[u8]| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b))
        };
        assert_eq!(o.attrs["str"], json!(format!("h:{}lo", sha(b"hel"))));
        assert_eq!(
            o.attrs["path"],
            json!(format!("/user/{}", {
                use sha1::Digest;
                hex::encode(sha1::Sha1::digest(b"x"))
            }))
        );
        // A glob's `*` does not cross `/`.
        let o = run_log(&[r#"replace_match(attributes["path"], "/user/*", "x")"#]).unwrap();
        assert_eq!(o.attrs["path"], json!("/user/123/list/456"));
        let o = run_log(&[r#"replace_all_matches(attributes, "*ell*", "redacted")"#]).unwrap();
        assert_eq!(o.attrs["str"], json!("redacted"));
        assert_eq!(o.attrs["int"], json!(42));
        let o =
            run_log(&[r#"replace_all_patterns(attributes, "value", "\\d{4}", "NNNN")"#]).unwrap();
        assert_eq!(o.attrs["card"], json!("NNNN-NNNN-NNNN-NNNN"));
        let o =
            run_log(&[r#"replace_all_patterns(attributes, "key", "^(str|int)$", "renamed_$1")"#])
                .unwrap();
        assert_eq!(
            (
                o.attrs["renamed_str"].clone(),
                o.attrs["renamed_int"].clone()
            ),
            (json!("hello"), json!(42))
        );
        // Non-string targets are left alone.
        let o = run_log(&[r#"replace_pattern(attributes["int"], "4", "5")"#]).unwrap();
        assert_eq!(o.attrs["int"], json!(42));
    }

    #[test]
    fn slice_editors() {
        let o = run_log(&[
            r#"append(attributes["tags"], "dev")"#,
            r#"append(attributes["new"], values = ["staging", "staging:east"])"#,
            r#"append(attributes["str"], "world")"#,
            r#"append(attributes["tags_copy"], attributes["tags"])"#,
        ])
        .unwrap();
        assert_eq!(o.attrs["tags"], json!(["prod", "staging", "dev"]));
        assert_eq!(o.attrs["new"], json!(["staging", "staging:east"]));
        assert_eq!(o.attrs["str"], json!(["hello", "world"]));
        assert_eq!(o.attrs["tags_copy"], json!([["prod", "staging", "dev"]]));
        let o = run_log(&[
            r#"set(attributes["l"], [0, 1, 2, 3, 4, 5])"#,
            r#"delete_index(attributes["l"], 0)"#,
            r#"delete_index(attributes["l"], Len(attributes["l"]) - 1)"#,
            r#"delete_index(attributes["l"], 1, 3)"#,
            r#"delete_index(attributes["tags"], Index(attributes["tags"], "staging"))"#,
        ])
        .unwrap();
        assert_eq!(o.attrs["l"], json!([1, 4]));
        assert_eq!(o.attrs["tags"], json!(["prod"]));
        let e = run_log(&[r#"delete_index(attributes["tags"], 5)"#])
            .err()
            .unwrap();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn where_clauses_and_span_paths() {
        let mut span = Span {
            name: "old".into(),
            kind: 2,
            trace_state: "a=1,b=2".into(),
            attributes: kvs(json!({"http.request.method": "GET", "http.route": "/users/{id}", "user.email": "a@b.c"}).as_object().unwrap()),
            ..Default::default()
        };
        let mut resource = None;
        let mut scope = None;
        let mut cache = Vec::new();
        let stmts = [
            r#"set(status.code, STATUS_CODE_ERROR) where attributes["http.route"] == "/users/{id}""#,
            r#"set(status.message, "never") where attributes["http.route"] == "/other""#,
            r#"set(attributes["user.hash"], SHA256(attributes["user.email"])) where attributes["user.email"] != nil"#,
            r#"delete_key(attributes, "user.email") where attributes["user.email"] != nil"#,
            r#"set(trace_state["svc"], "example")"#,
            r#"set(attributes["root"], IsRootSpan())"#,
            r#"set(span.attributes["kind"], span.kind.string)"#,
            r#"set_semconv_span_name("1.37.0", "original_span_name")"#,
            r#"set(end_time, start_time + Duration("2s"))"#,
        ];
        {
            let mut item = SpanMut {
                env: Env {
                    resource: &mut resource,
                    scope: Some(&mut scope),
                    cache: &mut cache,
                },
                span: &mut span,
            };
            for s in stmts {
                let st = Statement::parse(s, Context::Span).unwrap_or_else(|e| panic!("{s}: {e}"));
                st.exec(&mut item).unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
        let a = to_json(&span.attributes);
        assert_eq!(
            span.status.as_ref().map(|s| (s.code, s.message.as_str())),
            Some((2, ""))
        );
        assert!(a.get("user.email").is_none());
        let hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b"a@b.c"))
        };
        assert_eq!(a["user.hash"], json!(hash));
        assert_eq!(span.trace_state, "svc=example,a=1,b=2");
        assert_eq!(a["root"], json!(true));
        assert_eq!(a["kind"], json!("Server"));
        assert_eq!(span.name, "GET /users/{id}");
        assert_eq!(a["original_span_name"], json!("old"));
        assert_eq!(span.end_time_unix_nano, 2_000_000_000);
    }

    #[test]
    fn load_errors_name_the_column() {
        for (text, col, msg) in [
            (
                r#"sett(attributes["a"], 1)"#,
                1,
                "unknown editor `sett`; did you mean `set`?",
            ),
            (
                r#"set(attributes["a"], Sha256("x"))"#,
                22,
                "unknown function `Sha256`; did you mean `SHA256`?",
            ),
            (
                r#"set(attributes["a"], FooBar(1))"#,
                22,
                "unknown function `FooBar`",
            ),
            (
                r#"set(attributes["a"], When(true, 1, 2))"#,
                22,
                "not supported by ferrotel",
            ),
            (r#"SHA256("x")"#, 1, "it is a converter"),
            (r#"set("a", 1)"#, 5, "must be a path"),
            (
                r#"set(attributes["a"])"#,
                1,
                "set takes 2 argument(s), got 1",
            ),
            (r#"delete_key(attributes, "a", "b")"#, 29, "at most 2"),
            (
                r#"replace_pattern(attributes["a"], "(", "x")"#,
                34,
                "invalid regular expression",
            ),
            (
                r#"replace_pattern(attributes["a"], "x", "y", SHA256, "no format")"#,
                52,
                "exactly one %s",
            ),
            (
                r#"merge_maps(attributes, attributes, "overwrite")"#,
                36,
                "strategy must be",
            ),
            (r#"set(attributes["a"], 1) where"#, 30, "expected a value"),
            (r#"set(attributes["a"], 1) what"#, 25, "unexpected `what`"),
            (r#"set(nmae, "x")"#, 5, "unknown path `nmae`"),
            (r#"convert_sum_to_gauge()"#, 1, "runs in the metric context"),
            (
                r#"flatten(body, depht = 1)"#,
                15,
                "flatten has no parameter `depht`",
            ),
            (r#"ExtractPatterns(body, "no groups")"#, 1, "unknown editor"),
            (
                r#"set(attributes["a"], ExtractPatterns(body, "no groups"))"#,
                44,
                "no named capture group",
            ),
            (
                r#"set(attributes["a"], IsInCIDR(body, ["10.0.0.0/33"]))"#,
                37,
                "invalid CIDR",
            ),
        ] {
            let e = Statement::parse(text, Context::Log)
                .err()
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert!(e.msg.contains(msg), "{text}: {e}");
            assert_eq!(e.column, col, "{text}: {e}");
        }
    }

    #[test]
    fn contexts_are_inferred_from_prefixes() {
        use crate::ottl::infer_context;
        let traces = [
            Context::Resource,
            Context::Scope,
            Context::Span,
            Context::SpanEvent,
        ];
        assert_eq!(
            infer_context(&[r#"set(span.attributes["x"], "y")"#], &traces),
            Some(Context::Span)
        );
        assert_eq!(
            infer_context(&[r#"set(resource.attributes["x"], span.name)"#], &traces),
            Some(Context::Span)
        );
        assert_eq!(
            infer_context(&[r#"set(spanevent.name, span.name)"#], &traces),
            Some(Context::SpanEvent)
        );
        assert_eq!(
            infer_context(&[r#"set(resource.attributes["x"], "y")"#], &traces),
            Some(Context::Resource)
        );
        assert_eq!(
            infer_context(&[r#"set(attributes["x"], "y")"#], &traces),
            None
        );
        // `metric.name` is not a trace context.
        assert_eq!(infer_context(&["set(metric.name, \"x\")"], &traces), None);
    }
}
