//! The query protocol's answer side: XML documents in ELBv2's namespace.
//!
//! An answer is `<XxxResponse xmlns=…><XxxResult>…</XxxResult><ResponseMetadata>
//! <RequestId>…</RequestId></ResponseMetadata></XxxResponse>`; a failure is
//! `<ErrorResponse xmlns=…><Error><Type>Sender</Type><Code>…</Code><Message>…</Message>
//! </Error><RequestId>…</RequestId></ErrorResponse>` with HTTP 400 (500 and `Receiver`
//! when the server is at fault). Lists are `<Name><member>…</member></Name>`.
//!
//! [`Xml`] writes elements whose names are constants of this crate; text goes through
//! `quick_xml::escape::escape` (`<`, `>`, `&`, `'`, `"`), and characters XML 1.0 cannot
//! carry at all (most control characters) are replaced by U+FFFD, so no input can
//! make an answer that is not well-formed.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use controlplane::ops::elbv2::ElbError;

use crate::error::{ApiError, bounded_message, error_response};

/// ELBv2's XML namespace.
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// An XML document being written.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

fn xml_char(c: char) -> char {
    let ok = matches!(c, '\t' | '\n' | '\r')
        || ('\u{20}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c)
        || c >= '\u{10000}';
    if ok { c } else { '\u{FFFD}' }
}

/// `text` as XML character data: escaped, characters XML cannot carry replaced.
pub fn escape(text: &str) -> String {
    let clean: String = text.chars().map(xml_char).collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}

impl Xml {
    /// Opens element `tag`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// Closes element `tag`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag>text</tag>`.
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        self.out.push_str(&escape(text));
        self.close(tag)
    }

    /// `<tag>text</tag>` when there is a text.
    pub fn opt(&mut self, tag: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.text(tag, t);
        }
        self
    }

    /// `<tag><member>…</member>…</tag>`, each member written by `f`.
    pub fn list<T>(
        &mut self,
        tag: &str,
        items: &[T],
        mut f: impl FnMut(&mut Xml, &T),
    ) -> &mut Self {
        self.open(tag);
        for item in items {
            self.open("member");
            f(self, item);
            self.close("member");
        }
        self.close(tag)
    }

    /// A list of strings.
    pub fn strings(&mut self, tag: &str, items: &[String]) -> &mut Self {
        self.list(tag, items, |x, s| {
            x.out.push_str(&escape(s));
        })
    }

    /// What was written.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The whole answer document of `action` whose result `result` is.
pub fn response(action: &str, result: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    )
}

/// An ELBv2 request failed: in the operation, or before it (routing, signature, body).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ElbFailure {
    /// The operation failed.
    #[error(transparent)]
    Elb(#[from] ElbError),
    /// The protocol or authentication failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ElbFailure {
    /// HTTP status and the query protocol's error code. One exhaustive match.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let elb = |e: &ElbError| {
            let status = if e.is_server_fault() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, e.code())
        };
        match self {
            ElbFailure::Elb(e) => elb(e),
            ElbFailure::Api(api) => match api {
                ApiError::Ecs(e) => elb(&ElbError::from(e.clone())),
                ApiError::Discovery(e) => (api.status_and_code().0, e.code()),
                ApiError::Ssm(e) => (api.status_and_code().0, e.code()),
                ApiError::Acm(e) => (api.status_and_code().0, e.code()),
                ApiError::CloudWatch(e) => (api.status_and_code().0, e.code()),
                // An external node's key used on ELBv2 (the query protocol's code).
                ApiError::AccessDenied(_) => (StatusCode::FORBIDDEN, "AccessDenied"),
                ApiError::MissingTarget | ApiError::UnknownOperation(_) => {
                    (StatusCode::BAD_REQUEST, "InvalidAction")
                }
                ApiError::UnknownService(_) => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
                ApiError::Serialization(_)
                | ApiError::InvalidParameter(_)
                | ApiError::MissingParameter(_) => (StatusCode::BAD_REQUEST, "ValidationError"),
                ApiError::MissingAuthentication => {
                    (StatusCode::FORBIDDEN, "MissingAuthenticationToken")
                }
                ApiError::IncompleteSignature(_) => {
                    (StatusCode::BAD_REQUEST, "IncompleteSignature")
                }
                ApiError::UnrecognizedClient => (StatusCode::FORBIDDEN, "InvalidClientTokenId"),
                ApiError::InvalidSignature(_) => (StatusCode::FORBIDDEN, "SignatureDoesNotMatch"),
                ApiError::UnreadableBody(status, _) if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
                }
                ApiError::UnreadableBody(..) => (StatusCode::BAD_REQUEST, "MalformedInput"),
                // Never relayed (ELBv2 has no node requests): answered as the local error.
                ApiError::Relay { here, .. } => ElbFailure::Api((**here).clone()).status_and_code(),
            },
        }
    }

    /// The `<ErrorResponse>` document.
    pub fn document(&self, request_id: &str) -> String {
        let (status, code) = self.status_and_code();
        let kind = if status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let message = self.to_string();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            escape(&bounded_message(&message)),
            escape(request_id)
        )
    }

    /// The error as an HTTP answer.
    pub fn into_response(self, request_id: &str) -> Response {
        let (status, code) = self.status_and_code();
        error_response(status, code, "text/xml", self.document(request_id))
    }
}

/// An answer document as an HTTP answer.
pub fn ok_response(document: String) -> Response {
    let mut resp = (StatusCode::OK, document).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `doc` with quick-xml's reader: every event, to the end, without error.
    fn well_formed(doc: &str) {
        let mut reader = quick_xml::Reader::from_str(doc);
        while !matches!(
            reader.read_event().expect("well-formed XML"),
            quick_xml::events::Event::Eof
        ) {}
    }

    #[test]
    fn text_is_escaped_and_control_characters_replaced() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(escape("x\u{0}y\u{1b}z\tok"), "x\u{FFFD}y\u{FFFD}z\tok");
        let mut x = Xml::default();
        x.open("Tags")
            .text("Key", "</Key><evil>")
            .opt("Value", None)
            .strings("Names", &["a&b".into(), "\u{7}".into()])
            .close("Tags");
        let doc = response("DescribeTags", &x.finish(), "req-1");
        well_formed(&doc);
        assert!(doc.contains("<Key>&lt;/Key&gt;&lt;evil&gt;</Key>"), "{doc}");
        assert!(
            doc.contains("<Names><member>a&amp;b</member><member>\u{FFFD}</member></Names>"),
            "{doc}"
        );
        assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeTagsResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><DescribeTagsResult>"));
        assert!(doc.ends_with("</DescribeTagsResult><ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></DescribeTagsResponse>"));
    }

    #[test]
    fn errors_have_the_query_protocol_shape() {
        let e = ElbFailure::Elb(ElbError::Validation("bad <name> & \"more\"".into()));
        assert_eq!(
            e.status_and_code(),
            (StatusCode::BAD_REQUEST, "ValidationError")
        );
        let doc = e.document("r1");
        well_formed(&doc);
        assert!(doc.contains("<Error><Type>Sender</Type><Code>ValidationError</Code><Message>bad &lt;name&gt; &amp; &quot;more&quot;</Message></Error><RequestId>r1</RequestId></ErrorResponse>"), "{doc}");
        let e = ElbFailure::Elb(ElbError::Internal("disk".into()));
        assert_eq!(e.status_and_code().0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            e.document("r")
                .contains("<Type>Receiver</Type><Code>InternalFailure</Code>")
        );
        let e = ElbFailure::Api(ApiError::InvalidSignature("no".into()));
        assert_eq!(
            e.status_and_code(),
            (StatusCode::FORBIDDEN, "SignatureDoesNotMatch")
        );
        // A huge message is bounded.
        let e = ElbFailure::Elb(ElbError::Validation("x".repeat(1 << 20)));
        assert!(e.document("r").len() < 2000);
    }
}
