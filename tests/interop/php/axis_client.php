<?php
// A Lienthong client the way a PHP integrator writes one: PHP's built-in SoapClient in WSDL mode, the proxy
// generated from the gateway's own ?wsdl (no classmap, no hand-written types, no edited WSDL). The only
// hand-written part is the WS-Security UsernameToken header, as every PHP integrator adds it.
//
// Usage: php axis_client.php ENDPOINT SYSTEM_ID SECRET ACTION [ARGS...]
//   functions                     the operations the generated proxy exposes (__getFunctions)
//   send FILE                     sendEdoc with the file's raw bytes (SoapClient base64-encodes them)
//   inbox edoc|status             getReceivedEdocList
//   fetch DOCID                   getEdoc: the sha256 PHP computes over the bytes, the gateway's, the length
//   ack DOCID done|fail [REASON]  updateStatus
//   sent [DOCID]                  getSentEdocList
//   agencies [FILTER]             getAgenciesList
//
// Prints one JSON object on stdout. A SoapFault is an answer too: {"fault": true, ...} and exit status 0.

declare(strict_types=1);

const WSSE_NS = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
const PASSWORD_TEXT =
    'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText';

function out(array $data): void
{
    echo json_encode($data, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
}

function usage(string $why): void
{
    fwrite(STDERR, "axis_client.php: $why\n");
    fwrite(STDERR, "usage: php axis_client.php ENDPOINT SYSTEM_ID SECRET ACTION [ARGS...]\n");
    exit(64);
}

function security_header(string $username, string $password): SoapHeader
{
    $u = htmlspecialchars($username, ENT_XML1 | ENT_QUOTES, 'UTF-8');
    $p = htmlspecialchars($password, ENT_XML1 | ENT_QUOTES, 'UTF-8');
    $xml = '<wsse:Security xmlns:wsse="' . WSSE_NS . '">'
        . '<wsse:UsernameToken>'
        . "<wsse:Username>$u</wsse:Username>"
        . '<wsse:Password Type="' . PASSWORD_TEXT . "\">$p</wsse:Password>"
        . '</wsse:UsernameToken>'
        . '</wsse:Security>';
    return new SoapHeader(WSSE_NS, 'Security', new SoapVar($xml, XSD_ANYXML));
}

if ($argc < 5) {
    usage('not enough arguments');
}
[, $endpoint, $systemId, $secret, $action] = $argv;
$args = array_slice($argv, 5);

try {
    $client = new SoapClient($endpoint . '?wsdl', [
        'trace' => true,
        'cache_wsdl' => WSDL_CACHE_NONE,
        'exceptions' => true,
        'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    ]);
    $client->__setSoapHeaders([security_header($systemId, $secret)]);

    switch ($action) {
        case 'functions':
            out(['fault' => false, 'functions' => $client->__getFunctions(), 'types' => $client->__getTypes()]);
            break;

        case 'send':
            if (count($args) !== 1) {
                usage('send FILE');
            }
            $bytes = file_get_contents($args[0]);
            if ($bytes === false) {
                usage("cannot read {$args[0]}");
            }
            $response = $client->sendEdoc(['packet' => $bytes]);
            out(['fault' => false, 'response' => $response]);
            break;

        case 'inbox':
            if (count($args) !== 1) {
                usage('inbox edoc|status');
            }
            $response = $client->getReceivedEdocList(['messageType' => $args[0]]);
            out(['fault' => false, 'response' => $response]);
            break;

        case 'fetch':
            if (count($args) !== 1) {
                usage('fetch DOCID');
            }
            $response = $client->getEdoc(['docId' => $args[0]]);
            $result = $response->getEdocResult;
            // The proxy decodes xs:base64Binary itself: $result->packet is the packet's raw bytes.
            out([
                'fault' => false,
                'docId' => $result->docId,
                'messageType' => $result->messageType,
                'gatewaySha256' => $result->sha256,
                'phpSha256' => hash('sha256', $result->packet),
                'length' => strlen($result->packet),
            ]);
            break;

        case 'ack':
            if (count($args) < 2 || count($args) > 3) {
                usage('ack DOCID done|fail [REASON]');
            }
            $params = ['docId' => $args[0], 'status' => $args[1]];
            if (isset($args[2])) {
                $params['reason'] = $args[2];
            }
            $response = $client->updateStatus($params);
            out(['fault' => false, 'response' => $response]);
            break;

        case 'sent':
            $params = isset($args[0]) ? ['docId' => $args[0]] : [];
            $response = $client->getSentEdocList($params);
            out(['fault' => false, 'response' => $response]);
            break;

        case 'agencies':
            $params = isset($args[0]) ? ['filter' => $args[0]] : [];
            $response = $client->getAgenciesList($params);
            out(['fault' => false, 'response' => $response]);
            break;

        default:
            usage("unknown action $action");
    }
} catch (SoapFault $fault) {
    // The gateway's detail is declared in the WSDL (tns:LienthongFault): the proxy decodes it to an object.
    $detail = $fault->detail ?? null;
    $lienthong = is_object($detail) && isset($detail->LienthongFault) ? $detail->LienthongFault : null;
    out([
        'fault' => true,
        'faultcode' => $fault->faultcode ?? null,
        'faultstring' => $fault->faultstring ?? null,
        'code' => $lienthong->code ?? null,
        'message' => $lienthong->message ?? null,
        'correlationId' => $lienthong->correlationId ?? null,
        'detailType' => get_debug_type($detail),
    ]);
}
exit(0);
