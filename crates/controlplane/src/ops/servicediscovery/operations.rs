//! Operation records: GetOperation, ListOperations.

use model::wire_sd::{self, FilterCondition, OperationFilterName, OperationTargetType};

use super::namespaces::{check_filter, filter_passes};
use super::{SdError, invalid, list_page, required};
use crate::state::{Scope, State};

/// GetOperation: every operation completed when it was answered, so it is `SUCCESS`.
pub fn get_operation(
    state: &State,
    scope: &Scope,
    req: wire_sd::GetOperationRequest,
) -> Result<wire_sd::GetOperationResponse, SdError> {
    let id = required(req.operation_id, "OperationId")?;
    let op = state
        .discovery
        .operations
        .get(&(scope.clone(), id.clone()))
        .ok_or_else(|| SdError::OperationNotFound(format!("Operation not found: {id}")))?;
    Ok(wire_sd::GetOperationResponse {
        operation: Some(op.operation.clone()),
    })
}

fn passes(op: &wire_sd::Operation, f: &wire_sd::OperationFilter) -> bool {
    let target = |t: OperationTargetType| {
        op.targets
            .as_ref()
            .and_then(|m| m.get(t.as_str()).cloned())
            .unwrap_or_default()
    };
    let field = match f.name {
        Some(OperationFilterName::NamespaceId) => target(OperationTargetType::Namespace),
        Some(OperationFilterName::ServiceId) => target(OperationTargetType::Service),
        Some(OperationFilterName::Status) => {
            op.status.map(|s| s.as_str().to_owned()).unwrap_or_default()
        }
        Some(OperationFilterName::Type) => {
            op.r#type.map(|s| s.as_str().to_owned()).unwrap_or_default()
        }
        Some(OperationFilterName::UpdateDate) => {
            // Values are two epoch-second timestamps (checked before).
            let values = f.values.as_deref().unwrap_or(&[]);
            let bound = |i: usize| values.get(i).and_then(|v| v.parse::<f64>().ok());
            let at = op.update_date.unwrap_or(0.0);
            return matches!((bound(0), bound(1)), (Some(a), Some(b)) if a <= at && at <= b);
        }
        None => return false,
    };
    filter_passes(&field, f.values.as_deref(), f.condition)
}

/// ListOperations: filters `NAMESPACE_ID`, `SERVICE_ID`, `STATUS`, `TYPE` (EQ, IN) and
/// `UPDATE_DATE` (BETWEEN two epoch-second values); paged in id order.
pub fn list_operations(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire_sd::ListOperationsRequest,
) -> Result<wire_sd::ListOperationsResponse, SdError> {
    let filters = req.filters.unwrap_or_default();
    for f in &filters {
        match f.name {
            None => return Err(invalid("Filters[].Name is required.")),
            Some(OperationFilterName::UpdateDate) => {
                check_filter(
                    f.values.as_deref(),
                    f.condition,
                    &[FilterCondition::Between],
                )?;
                if f.values.iter().flatten().any(|v| v.parse::<f64>().is_err()) {
                    return Err(invalid("UPDATE_DATE values must be epoch seconds."));
                }
            }
            Some(_) => check_filter(
                f.values.as_deref(),
                f.condition,
                &[FilterCondition::Eq, FilterCondition::In],
            )?,
        }
    }
    let paging = (req.max_results, req.next_token.as_deref());
    let page = list_page(state, now, "ListOperations", &filters, paging, |after| {
        state
            .discovery
            .operations_in(scope, after)
            .filter(|o| filters.iter().all(|f| passes(&o.operation, f)))
            .map(|o| {
                (
                    o.id.clone(),
                    wire_sd::OperationSummary {
                        id: Some(o.id.clone()),
                        status: o.operation.status,
                    },
                )
            })
    })?;
    Ok(wire_sd::ListOperationsResponse {
        operations: Some(page.items),
        next_token: page.next_token,
    })
}
